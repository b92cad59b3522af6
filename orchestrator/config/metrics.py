"""The ``[metrics]`` and ``[compliance]`` tables: the Prometheus endpoint and the non-compliance rule.

```toml
[metrics]                  # the endpoint of `patchwave serve`; off unless port is set
port = 9469                # 0 (the default) = no endpoint
address = "127.0.0.1"      # an IP address; the default keeps it on this machine
cache = "15s"              # scrapes within this long of a fact-store read get the same figures

[compliance]
grace = "30d"              # pending security updates are tolerated this long after the last patch
```

Neither table changes a plan, so neither is part of ``Settings.digest``.
"""

from __future__ import annotations

import ipaddress

from orchestrator.config.settings import ComplianceSettings, MetricsSettings
from providers.settings import SettingsReader

METRICS_KEYS = ("port", "address", "cache")
COMPLIANCE_KEYS = ("grace",)


def metrics_table(t: SettingsReader) -> MetricsSettings:
    address = t.text("address", "127.0.0.1")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise t.error(
            "address",
            f"{address!r} is not an IP address",
            'write address = "127.0.0.1" (or "::1"; "0.0.0.0" exposes the figures to the network)',
        ) from None
    return MetricsSettings(
        address=address,
        port=t.integer("port", 0, low=0, high=65535),
        cache_s=t.duration("cache", 15.0, minimum=0.0, maximum=3600.0),
    )


def compliance_table(t: SettingsReader) -> ComplianceSettings:
    return ComplianceSettings(grace_s=t.seconds("grace", 30 * 86400, minimum=0))
