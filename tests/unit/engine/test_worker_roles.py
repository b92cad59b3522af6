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
