"""Crash injection over real runs: the worker or the embedded Temporal server is SIGKILLed at a random
point, the run is resumed, and the end state is checked from the providers and the fact store.

Invariants per injection (tests/crash/harness.py ``check``): the resumed run finished and every VM
and host succeeded; every snapshot that carries the run's ownership is the one recorded for its VM
and kept by the TTL policy (no leak, no second snapshot); no host is left in maintenance (platform
and fact store), hosts one at a time and at the new build; on Proxmox (hosts patched over SSH)
exactly one package upgrade that changed something per node, one reboot per node, and no reboot of
a node that was not the only one in maintenance or still ran guests; each fake guest ran exactly one
real upgrade (no VM patched twice). Hypervisor phases run on vSphere and Proxmox; libvirt has none.

A server kill also checks that ``patchwave run`` notices by itself and exits (EngineLost) instead of
hanging on a dead address. An injection whose run finished before its kill point is checked but not
counted; the campaign replaces it (up to ``TOP_UPS`` per pair) so the requested number lands.

Knobs (environment): ``PATCHWAVE_CRASH_INJECTIONS`` (default :data:`DEFAULT_INJECTIONS`, sized for
~4 minutes on a 2-core CI machine), ``PATCHWAVE_CRASH_SEED`` (default: a fresh one, printed),
``PATCHWAVE_CRASH_PROVIDERS`` / ``PATCHWAVE_CRASH_TARGETS`` (comma lists), ``PATCHWAVE_CRASH_SUMMARY``
(the JSON summary; tests/conftest.py prints its headline at the end of the pytest run),
``PATCHWAVE_CRASH_INDEX`` (replay one injection of the campaign; a dirty result prints the line).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.crash.harness import KILL_TARGETS, PROVIDERS, TOP_UPS, Campaign, headline, summary_path

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: 5 per (provider, kill target) pair: CI's share of its time budget now that the lab suites
#: (integrity, pinned promotion, patch by CVE, backups, automatic updates, the live view) run too.
#: Measured on the 2-core machine: 60 injections took 7.6 min (~7.6 s each). Larger campaigns are one
#: variable away: PATCHWAVE_CRASH_INJECTIONS=120 is the full campaign of earlier rounds (~16 minutes).
DEFAULT_INJECTIONS = 30


def _list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    chosen = tuple(x.strip() for x in raw.split(",") if x.strip()) or default
    unknown = set(chosen) - set(default)
    if unknown:
        pytest.fail(f"{name}: unknown {sorted(unknown)}; choose from {', '.join(default)}", pytrace=False)
    return chosen


@pytest.mark.timeout(3600)
def test_killed_workers_and_servers_leave_nothing_behind(tmp_path: Path) -> None:
    campaign = Campaign(
        seed=os.environ.get("PATCHWAVE_CRASH_SEED", "") or secrets.token_hex(4),
        injections=int(os.environ.get("PATCHWAVE_CRASH_INJECTIONS", "") or DEFAULT_INJECTIONS),
        providers=_list("PATCHWAVE_CRASH_PROVIDERS", PROVIDERS),
        targets=_list("PATCHWAVE_CRASH_TARGETS", KILL_TARGETS),
        only=int(os.environ["PATCHWAVE_CRASH_INDEX"]) if os.environ.get("PATCHWAVE_CRASH_INDEX") else None,
    )
    print(f"crash injection: seed {campaign.seed}, {campaign.injections} injections requested")
    campaign.run(tmp_path, log=print)
    data = campaign.write(summary_path())
    print(headline(data))

    if campaign.unavailable:
        reasons = "; ".join(f"{p}: {why}" for p, why in campaign.unavailable.items())
        if os.environ.get("CI") == "true" or len(campaign.unavailable) == len(campaign.providers):
            pytest.fail(f"providers unavailable: {reasons} (run .ci/install)", pytrace=False)
    dirty = [r for r in campaign.results if not r.clean]
    assert not dirty, "\n".join(f"{r.replay()}: {r.violations}" for r in dirty)
    bad_baselines = {p: c["violations"] for p, c in campaign.calibrations.items() if c["violations"]}
    assert not bad_baselines, bad_baselines
    assert data["injections"] > 0, "no kill landed inside a run"
    if campaign.only is None and not campaign.unavailable:
        assert data["injections"] >= campaign.injections, (
            f"only {data['injections']} of {campaign.injections} kills landed inside a run "
            f"(each pair gets up to {TOP_UPS} replacements)"
        )
