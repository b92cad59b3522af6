"""What a VM's patch does around the patch itself: a full backup before its snapshot ([policy]
backup, [backup]) and a pause of its automatic updater ([autoupdates] mode). Pure.

* ``backup = "always"``: every VM of the group is backed up; ``"critical"``: only VMs marked with
  ``[backup] critical_tag`` (a tag, or a label ``<tag>=true``); ``"never"``: none.
* A VM that must be backed up on a site whose provider has no BACKUP capability (no backup target in
  its provider table), or whose platform cannot back up this guest, is blocked at plan time
  (code ``capability``) — it is not patched without the backup its policy asks for.
"""

from __future__ import annotations

from dataclasses import replace

from orchestrator.config.settings import GroupSettings, Settings
from orchestrator.model import VmPolicy
from providers.base import Capability, VmInfo


def backup_required(vm: VmInfo, group: GroupSettings, settings: Settings) -> bool:
    mode = group.policy.backup
    return mode == "always" or (mode == "critical" and settings.backup.critical(vm.tags, vm.labels))


def backup_blocker(vm: VmInfo, group: GroupSettings, caps: frozenset[Capability]) -> str:
    """Why ``vm`` cannot get the backup its policy asks for ("" = it can)."""
    if Capability.BACKUP not in caps:
        return (
            f"{vm.ref} must be backed up before patching (group {group.name!r}: backup = "
            f"{group.policy.backup!r}) but site {vm.ref.site!r} has no backup target; set its provider's "
            "backup target (Proxmox backup_storage, libvirt backup_dir, vSphere backup_folder) or "
            'backup = "never" for the group'
        )
    if Capability.BACKUP in vm.unsupported:
        return f"{vm.ref} must be backed up before patching but its platform cannot back up this guest"
    return ""


def with_safeguards(policy: VmPolicy, vm: VmInfo, group: GroupSettings, settings: Settings) -> VmPolicy:
    """``policy`` with the backup and automatic-updater decisions of ``vm``."""
    updater = settings.autoupdates.for_group(group.name)
    return replace(
        policy,
        backup=backup_required(vm, group, settings),
        backup_keep=settings.backup.keep,
        backup_timeout_s=settings.backup.timeout_s,
        pause_autoupdates=updater.pauses_during_runs,
        autoupdates_wait_s=updater.wait_s,
    )
