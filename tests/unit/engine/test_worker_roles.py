"""Worker roles: which task queues a `patchwave serve` polls (--site NAME..., --central)."""

from __future__ import annotations

import re

import pytest

from orchestrator.engine.workers import Roles

SITES = ("east", "west")


@pytest.mark.parametrize(
    ("sites", "central", "queues"),
    [
        ((), None, "patchwave, patchwave-site-east, patchwave-site-west"),  # all-in-one default
        ((), True, "patchwave"),  # the central worker of a cluster
        (("east",), None, "patchwave-site-east"),  # a site worker
        (("east", "west", "east"), None, "patchwave-site-east, patchwave-site-west"),
        (("west",), True, "patchwave, patchwave-site-west"),
        (("west",), False, "patchwave-site-west"),
    ],
)
def test_the_roles_choose_the_queues(sites: tuple[str, ...], central: bool | None, queues: str) -> None:
    assert Roles.chosen(sites, central, SITES).describe(SITES) == queues


@pytest.mark.parametrize(
    ("sites", "central", "words"),
    [(("north",), None, "no such site: north (configured: east, west)"), ((), False, "nothing to serve")],
)
def test_a_role_that_serves_nothing_real_is_refused(
    sites: tuple[str, ...], central: bool, words: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        Roles.chosen(sites, central, SITES)


# ------------------------------------------------------------------------------ activity slots
def _settings(text: str):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from orchestrator.config.loader import parse_settings_text

    base = '[providers.td]\nkind = "libvirt"\nuri = "test:///default"\n'
    return parse_settings_text(base + text, file=Path("/nonexistent/patchwave.toml"), environ={})


def test_activity_slots_follow_the_configured_concurrency_so_a_wave_never_waits_for_a_slot() -> None:
    from orchestrator.engine.workers import MIN_ACTIVITY_SLOTS, SLOT_HEADROOM, activity_slots

    assert activity_slots(_settings("")) == MIN_ACTIVITY_SLOTS  # concurrency 2
    assert activity_slots(_settings("[policy]\nconcurrency = 20\n")) >= 20 + SLOT_HEADROOM
    groups = (
        '[policy]\nconcurrency = 20\n[[groups]]\nname = "db"\nmatch = { names = ["db*"] }\n'
        "[groups.policy]\nconcurrency = 30\n"
    )
    assert activity_slots(_settings(groups)) >= 20 + 30 + SLOT_HEADROOM  # both groups may be in flight
    assert activity_slots(_settings("[policy]\nconcurrency = 1000\n")) == 512  # capped
    # VMs prepared ahead of the slots run activities too (baseline health, snapshot)
    ahead = activity_slots(_settings("[policy]\nconcurrency = 20\nprepare_ahead = 20\n"))
    assert ahead >= 40 + SLOT_HEADROOM
