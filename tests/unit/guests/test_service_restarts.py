"""Restarting the services a patch left on old libraries: what each package manager runs, and what it refuses."""

from __future__ import annotations

import shlex

import pytest

from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.packages.apt import Apt
from orchestrator.guests.packages.base import KERNEL, restart_units_command, restartable
from orchestrator.guests.packages.dnf import Dnf
from orchestrator.guests.packages.zypper import Zypper
from providers.base import ExecResult

STALE = ("nginx.service", "dbus.service", KERNEL, "systemd-logind.service", "getty@tty1.service",
         "cron.service", "nginx.service", "user@1000.service", "systemd", "wicked.service")  # fmt: skip


def test_only_services_outside_the_keep_running_list_are_restartable() -> None:
    assert restartable(STALE) == ("nginx.service", "cron.service")
    assert restartable(("systemd-resolved.service", "libvirtd.service")) == ("systemd-resolved.service",)


@pytest.mark.parametrize("pm", [Dnf(), Zypper()])
def test_dnf_and_zypper_restart_the_restartable_units_with_systemctl(pm: Dnf | Zypper) -> None:
    command = pm.restart_services_command(STALE)
    assert shlex.split(command) == ["systemctl", "restart", "--", "nginx.service", "cron.service"]


def test_a_unit_name_is_quoted_for_the_shell() -> None:
    odd = "evil;reboot.service"
    assert shlex.split(restart_units_command([odd])) == ["systemctl", "restart", "--", odd]


def test_with_nothing_restartable_the_command_restarts_nothing() -> None:
    assert "systemctl" not in restart_units_command(("dbus.service", KERNEL))


def test_apt_lets_needrestart_restart_what_it_found_itself() -> None:
    command = Apt().restart_services_command(["nginx.service"])
    assert "needrestart -r a -l" in command
    assert "nginx.service" not in command  # needrestart's own list (and override_rc) decides
    assert "exit 127" in command  # no needrestart: a failure, never a silent no-op


@pytest.mark.parametrize(
    ("pm", "code"), [(Apt(), "apt_failed"), (Dnf(), "dnf_failed"), (Zypper(), "zypper_failed")]
)
def test_a_failed_restart_raises_with_its_output(pm: Apt | Dnf | Zypper, code: str) -> None:
    pm.parse_restart_services(ExecResult(0, "Restarting services..."))
    with pytest.raises(PackageManagerError) as raised:
        pm.parse_restart_services(ExecResult(1, "", "Job for nginx.service failed"))
    assert raised.value.code == code and "Job for nginx.service failed" in raised.value.output
