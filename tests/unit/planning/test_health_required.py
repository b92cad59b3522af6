"""A VM that no health check applies to is never patched and counted healthy without a word.

``[policy] require_health = true`` (the default) blocks it (code ``no_health_check``) unless its
group says ``health = "none"`` in ``[groups.policy]``; then, or with ``require_health = false``, it is
planned with a warning of the same code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.loader import parse_settings_text
from orchestrator.errors import ConfigError
from tests.unit.planning.test_planner import SITES, WEST, codes, plan, settings

WEB_ONLY = (
    '\n[[health]]\nname = "web"\nkind = "http"\nurl = "http://{ip}/health"\nmatch = { names = ["web-*"] }\n'
)
EAST_HOSTLESS = [WEST]  # app-1, app-2: no check matches them


def test_a_vm_without_a_health_check_is_blocked_by_default_with_the_fix() -> None:
    p = plan(EAST_HOSTLESS, settings(health=WEB_ONLY), hosts=False)
    assert codes(p) == {"west/app-1": ["no_health_check"], "west/app-2": ["no_health_check"]}
    assert p.waves == ()
    reason = p.blocked[0].reason
    assert "no [[health]] check applies to west/app-1" in reason
    assert "health = \"none\" in the [groups.policy] of group 'default'" in reason


def test_a_group_that_says_health_none_is_planned_with_a_warning() -> None:
    body = '[[groups]]\nname = "apps"\nmatch = { names = ["app-*"] }\n[groups.policy]\nhealth = "none"\n'
    p = plan(EAST_HOSTLESS, settings(body, health=WEB_ONLY), hosts=False)
    assert [s.vm.name for s in p.vm_steps] == ["app-1", "app-2"] and codes(p) == {}
    notes = [(w.target, w.code) for w in p.warnings]
    assert notes == [("west/app-1", "no_health_check"), ("west/app-2", "no_health_check")]
    assert all("counted healthy without a check" in w.reason and "'apps'" in w.reason for w in p.warnings)


def test_require_health_false_plans_unchecked_vms_with_a_warning() -> None:
    p = plan(EAST_HOSTLESS, settings("[policy]\nrequire_health = false\n", health=""), hosts=False)
    assert len(p.vm_steps) == 2
    assert {w.code for w in p.warnings} == {"no_health_check"}
    assert all("require_health = false" in w.reason for w in p.warnings)


def test_a_vm_with_a_matching_check_gets_neither() -> None:
    p = plan(EAST_HOSTLESS, settings(health=WEB_ONLY.replace('"web-*"', '"app-*"')), hosts=False)
    assert len(p.vm_steps) == 2 and p.warnings == () and codes(p) == {}


def test_a_blocked_vm_lists_every_reason() -> None:
    from dataclasses import replace

    from providers.base import PowerState

    off = replace(WEST, vms=(replace(WEST.vms[0], power=PowerState.STOPPED),))
    assert codes(plan([off], settings(health=""), hosts=False)) == {
        "west/app-1": ["no_health_check", "powered_off"]
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            '[[groups]]\nname = "a"\nmatch = { names = ["a"] }\n[groups.policy]\nrequire_health = false\n',
            "require_health",
        ),
        ('[policy]\nhealth = "none"\n', "health"),
        ('[[groups]]\nname = "a"\nmatch = { names = ["a"] }\n[groups.policy]\nhealth = "skip"\n', "health"),
    ],
)
def test_the_keys_live_where_they_mean_something(body: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_settings_text(SITES + body, file=Path("/x.toml"), environ={})
    assert err.value.field.endswith(field)
