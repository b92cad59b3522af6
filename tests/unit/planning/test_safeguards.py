"""The safeguards a plan decides per VM: the backup before the snapshot ([policy] backup, [backup]
critical_tag, per group) and the automatic updater's pause ([autoupdates] mode)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.backups import BackupSettings
from orchestrator.config.loader import parse_settings_text
from orchestrator.errors import ConfigError
from orchestrator.model import VmStep
from providers.base import Inventory
from tests.unit.planning.test_planner import ALL, GUESTS_ONLY, SITES, plan, settings, vm

EAST = Inventory(
    "east",
    hosts=(),
    vms=(vm("east", "web-1", tags=("critical",)), vm("east", "web-2", labels={"critical": "yes"}),
         vm("east", "db-1"), vm("east", "db-2", labels={"critical": "no"})),
)  # fmt: skip
GROUPS = """
[[groups]]
name = "db"
match = { names = ["db-*"] }
[groups.policy]
backup = "always"
[groups.autoupdates]
mode = "security"
"""


def steps(p) -> dict[str, VmStep]:  # type: ignore[no-untyped-def]
    return {s.vm.name: s for w in p.waves for s in w.vms}


def test_backups_follow_the_policy_the_critical_tag_and_the_group_override() -> None:
    config = settings('[policy]\nbackup = "critical"\n[backup]\nkeep = 4\ntimeout = "30m"\n' + GROUPS)
    found = steps(plan([EAST], config, capabilities={"east": ALL}))
    assert {n: s.policy.backup for n, s in found.items()} == {
        "web-1": True, "web-2": True, "db-1": True, "db-2": True
    }  # fmt: skip
    assert {(s.policy.backup_keep, s.policy.backup_timeout_s) for s in found.values()} == {(4, 1800)}
    plain = steps(plan([EAST], settings('[policy]\nbackup = "critical"\n'), capabilities={"east": ALL}))
    assert {n: s.policy.backup for n, s in plain.items()} == {
        "web-1": True, "web-2": True, "db-1": False, "db-2": False
    }  # fmt: skip
    assert not any(
        s.policy.backup for s in steps(plan([EAST], settings(), capabilities={"east": ALL})).values()
    )


def test_a_vm_that_must_be_backed_up_where_no_backup_target_exists_is_blocked() -> None:
    p = plan([EAST], settings('[policy]\nbackup = "critical"\n'), capabilities={"east": GUESTS_ONLY})
    assert sorted(steps(p)) == ["db-1", "db-2"]
    reasons = {b.target: (b.code, b.reason) for b in p.blocked}
    assert set(reasons) == {"east/web-1", "east/web-2"}
    code, reason = reasons["east/web-1"]
    assert code == "capability" and "backup_storage" in reason and 'backup = "never"' in reason


def test_the_updater_is_paused_unless_the_group_lets_it_run_during_rollouts() -> None:
    found = steps(plan([EAST], settings('[autoupdates]\nmode = "coexist"\nwait = "5m"\n' + GROUPS),
                       capabilities={"east": ALL}))  # fmt: skip
    assert {n: s.policy.pause_autoupdates for n, s in found.items()} == {
        "web-1": True, "web-2": True, "db-1": False, "db-2": False
    }  # fmt: skip
    assert found["web-1"].policy.autoupdates_wait_s == 300
    unmanaged = steps(plan([EAST], settings(GROUPS.replace('mode = "security"', 'mode = "off"')),
                           capabilities={"east": ALL}))  # fmt: skip
    assert {n: s.policy.pause_autoupdates for n, s in unmanaged.items()} == {
        "web-1": False, "web-2": False, "db-1": True, "db-2": True
    }  # unmanaged (the default) leaves the updater alone; "off" stops a timer enabled by hand  # fmt: skip


def test_the_backup_table_defaults_and_its_mistakes() -> None:
    assert settings().backup == BackupSettings() and settings().policy.backup == "never"
    custom = settings('[backup]\ncritical_tag = "tier0"\nverify_every = "7d"\nverify_per_round = 3\n')
    assert (custom.backup.critical_tag, custom.backup.verify_every_s, custom.backup.verify_per_round) == (
        "tier0", 7 * 86400, 3
    )  # fmt: skip
    assert custom.backup.critical(("tier0",), {}) and custom.backup.critical((), {"tier0": "true"})
    assert not custom.backup.critical(("critical",), {"tier0": "no"})
    for body, field in (
        ('[policy]\nbackup = "sometimes"\n', "policy.backup"),
        ("[backup]\nkeep = 0\n", "backup.keep"),
        ('[backup]\ncritical_tag = " "\n', "backup.critical_tag"),
        ("[backup]\nkept = 3\n", "backup.kept"),
        ('[[groups]]\nname = "g"\nmatch = { names = ["x"] }\n[groups.policy]\nbackup = "yes"\n', "backup"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_settings_text(SITES + body, file=Path("/etc/patchwave/test.toml"), environ={})
        assert field in str(caught.value), (body, str(caught.value))
