"""The ``[backup]`` table: how a run's backups are kept and how often they are restore-tested.

```toml
[policy]
backup = "critical"         # never (default) | critical | always — per group in [groups.policy]

[backup]
keep = 3                    # patchwave backups kept per VM after a successful backup (>= 1)
timeout = "2h"              # one backup (vzdump / backup job / clone) at most
critical_tag = "critical"   # the VM tag (or label "<tag>=true") that marks a machine critical
verify_every = "7d"         # `patchwave serve`: a restore test round this often ("0" = none)
verify_per_round = 5        # backups restore-tested per round, least recently verified first
verify_timeout = "1h"       # one restore + boot + probes at most
```

*Where* a backup goes is the provider's: each site's provider table names its backup target
(Proxmox ``backup_storage``, libvirt ``backup_dir``, vSphere ``backup_folder``); a site without one
has no BACKUP capability, and a VM that must be backed up there is blocked at plan time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from providers.settings import MAX_TIMEOUT_S, SettingsReader

BACKUP_POLICIES = ("never", "critical", "always")
KEYS = ("keep", "timeout", "critical_tag", "verify_every", "verify_per_round", "verify_timeout")


@dataclass(frozen=True)
class BackupSettings:
    keep: int = 3
    timeout_s: int = 7200
    critical_tag: str = "critical"
    verify_every_s: int = 0  # 0 = no restore-test schedule
    verify_per_round: int = 5
    verify_timeout_s: int = 3600

    def critical(self, tags: tuple[str, ...] | frozenset[str], labels: Mapping[str, str]) -> bool:
        """Is a VM with these tags and labels marked critical (tag, or label ``<tag>=true|yes|1``)?"""
        flag = labels.get(self.critical_tag, "").strip().lower()
        return self.critical_tag in tags or flag in ("true", "yes", "1")


def backup_table(t: SettingsReader) -> BackupSettings:
    tag = t.text("critical_tag", "critical")
    if not tag.strip():
        raise t.error("critical_tag", "the critical tag is empty", 'write critical_tag = "critical"')
    return BackupSettings(
        keep=t.integer("keep", 3, low=1, high=1000),
        timeout_s=t.seconds("timeout", 7200, minimum=10, maximum=MAX_TIMEOUT_S),
        critical_tag=tag,
        verify_every_s=t.seconds("verify_every", 0, minimum=0),
        verify_per_round=t.integer("verify_per_round", 5, low=1, high=500),
        verify_timeout_s=t.seconds("verify_timeout", 3600, minimum=10, maximum=MAX_TIMEOUT_S),
    )
