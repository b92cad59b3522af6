"""The ``[autoupdates]`` table and its per-group ``[groups.autoupdates]`` overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.autoupdates import AutoUpdateSettings
from orchestrator.config.loader import load_settings
from orchestrator.config.settings import Settings
from orchestrator.errors import ConfigError
from tests.support.paths import REPO

SITE = '[providers.lab]\nkind = "libvirt"\nuri = "qemu:///system"\n'
WINDOW = '[windows.weekend]\ncron = "0 22 * * SAT"\nduration = "6h"\ntimezone = "Europe/Berlin"\n'


def load(tmp_path: Path, body: str) -> Settings:
    path = tmp_path / "patchwave.toml"
    path.write_text(SITE + body)
    return load_settings(path, environ={})


def refused(tmp_path: Path, body: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, body)
    return caught.value


def test_without_the_table_nothing_is_managed_and_runs_leave_the_updater_alone(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    default = settings.autoupdates.for_group("default")
    assert default == AutoUpdateSettings()
    assert (default.mode, default.managed, default.pauses_during_runs, default.holds_pins) == (
        "unmanaged",
        False,
        False,
        False,
    )


def test_the_modes_say_who_updates_and_who_waits() -> None:
    by_mode = {m: AutoUpdateSettings(mode=m) for m in ("unmanaged", "off", "security", "coexist")}
    assert [m for m, s in by_mode.items() if s.managed] == ["off", "security", "coexist"]
    assert [m for m, s in by_mode.items() if s.pauses_during_runs] == ["off", "coexist"]
    assert [m for m, s in by_mode.items() if s.holds_pins] == ["coexist"]


def test_a_group_overrides_the_default_key_by_key(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        WINDOW
        + '[autoupdates]\nmode = "coexist"\nmail = "ops@example.com"\nwait = "20m"\n'
        + 'origins = ["origin=patchwave-lab,codename=${distro_codename}-security,label=patchwave-lab-Security"]\n'
        + '[[groups]]\nname = "web"\nwindow = "weekend"\nmatch = { names = ["web-*"] }\n'
        + '[groups.autoupdates]\nmode = "security"\nreboot = "window"\n',
    )
    web, default = settings.autoupdates.for_group("web"), settings.autoupdates.for_group("default")
    assert (default.mode, default.reboot, default.mail, default.wait_s) == (
        "coexist",
        "never",
        "ops@example.com",
        1200,
    )
    assert (web.mode, web.reboot, web.mail, web.wait_s, web.origins) == (
        "security",
        "window",
        "ops@example.com",
        1200,
        default.origins,
    )


def test_the_example_configuration_documents_the_table(tmp_path: Path) -> None:
    settings = load_settings(REPO / "config" / "patchwave.example.toml", environ={"PVE_TOKEN": "t", "VCENTER_PASSWORD": "p", "VSPHERE_GUEST_PASSWORD": "g", "PVE_PASSWORD": "x"})  # fmt: skip
    assert settings.autoupdates.default.managed


@pytest.mark.parametrize(
    ("body", "field", "fix"),
    [
        ('[autoupdates]\nmode = "on"\n', "autoupdates.mode", "use one of: unmanaged, off, security, coexist"),
        ('[autoupdates]\nreboots = "never"\n', "autoupdates.reboots", "did you mean 'reboot'?"),
        ('[autoupdates]\norigins = ["Debian-Security"]\n', "autoupdates.origins", "origin=Debian"),
        ('[autoupdates]\norigins = ["origin=Debian;label=x"]\n', "autoupdates.origins", "no quotes"),
        ('[autoupdates]\nmail = "ops\\"@example.com"\n', "autoupdates.mail", "ops@example.com"),
        ('[autoupdates]\nwait = "7h"\n', "autoupdates.wait", "wait"),
        (
            (
                '[autoupdates]\nmode = "coexist"\n[[groups]]\nname = "web"\nmatch = { names = ["web-*"] }\n'
                '[groups.autoupdates]\nreboot = "window"\n'
            ),
            "groups[0].autoupdates.reboot",
            "give group 'web' a window",
        ),
        (
            '[autoupdates]\nmode = "security"\nreboot = "window"\n[[groups]]\nname = "db"\nmatch = { names = ["db-*"] }\n',
            "autoupdates.reboot",
            "give group 'db' a window",
        ),
        (
            '[[groups]]\nname = "web"\nmatch = { names = ["web-*"] }\n[groups.autoupdates]\nmodes = "off"\n',
            "groups[0].autoupdates.modes",
            "did you mean 'mode'?",
        ),
    ],
)
def test_mistakes_name_the_field_and_the_fix(tmp_path: Path, body: str, field: str, fix: str) -> None:
    err = refused(tmp_path, WINDOW + body)
    assert err.field == field
    assert fix in err.fix


def test_a_window_reboot_is_fine_for_a_group_with_a_window_and_the_off_mode_needs_none(
    tmp_path: Path,
) -> None:
    settings = load(
        tmp_path,
        WINDOW
        + '[autoupdates]\nmode = "off"\nreboot = "window"\n'
        + '[[groups]]\nname = "web"\nwindow = "weekend"\nmatch = { names = ["web-*"] }\n'
        + '[groups.autoupdates]\nmode = "coexist"\n',
    )
    assert settings.autoupdates.for_group("web").reboot == "window"
    assert settings.autoupdates.for_group("default").mode == "off"


def test_the_table_does_not_change_the_config_digest(tmp_path: Path) -> None:
    plain = load(tmp_path, "")
    managed = load(tmp_path, '[autoupdates]\nmode = "coexist"\n')
    assert plain.digest == managed.digest  # a run's plan does not depend on it: resume stays possible
