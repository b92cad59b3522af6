"""Command builders: what each package manager is asked to run, checked as shell, not as strings."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from orchestrator.guests.errors import PackageManagerError
from orchestrator.guests.osinfo import OsInfo
from orchestrator.guests.packages import package_manager_for
from orchestrator.guests.packages.apt import Apt
from orchestrator.guests.packages.base import UpdateSelection, section_command, split_sections
from orchestrator.guests.packages.dnf import Dnf
from orchestrator.guests.packages.zypper import Zypper
from providers.base import ExecResult
from tests.support import paths

DATA = paths.DATA / "guests"
ODD = "libstdc++6;touch${IFS}/tmp/pwned=1:2.0~rc1+dfsg-1'x"


def all_commands(pm) -> list[str]:
    return [
        pm.list_updates_command(),
        pm.apply_command(UpdateSelection("all")),
        pm.apply_command(UpdateSelection("security")),
        pm.reboot_required_command(),
        pm.installed_command(["a", "b"]),
        pm.needs_restart_command(),
        pm.restart_services_command(["nginx.service", ODD, "dbus.service", "kernel"]),
        pm.restart_services_command([]),
    ]


@pytest.mark.parametrize(
    "pm",
    [
        Apt(),
        Apt(full_upgrade=True),
        Dnf(),
        Zypper(),
        Dnf(root="/mnt/x y"),
        Zypper(root="/mnt/x y"),
        Apt(refresh=False),
        Dnf(refresh=False),
        Zypper(refresh=False),
    ],
)
def test_every_command_is_valid_posix_shell(pm) -> None:
    for command in all_commands(pm):
        check = subprocess.run(["/bin/sh", "-n", "-c", command], check=False, capture_output=True, text=True)
        assert check.returncode == 0, (command, check.stderr)


def test_apt_waits_for_the_lock_and_keeps_conffiles_noninteractively() -> None:
    pm = Apt(lock_timeout=321)
    for command in (pm.list_updates_command(), pm.apply_command(UpdateSelection("all"))):
        assert "-o DPkg::Lock::Timeout=321" in command
        assert "DEBIAN_FRONTEND=noninteractive" in command
    apply_all = pm.apply_command(UpdateSelection("all"))
    assert "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold" in apply_all
    assert apply_all.rstrip().endswith("-y upgrade --with-new-pkgs")


def test_apt_full_upgrade_is_dist_upgrade_for_hypervisor_hosts() -> None:
    pm = Apt(full_upgrade=True)
    assert pm.apply_command(UpdateSelection("all")).rstrip().endswith("-y dist-upgrade")
    assert pm.list_updates_command().rstrip().endswith("apt-get -q -s dist-upgrade")
    assert "update >&2" in pm.list_updates_command()  # the lists are refreshed before listing


def test_apt_pins_are_exact_and_quoted() -> None:
    command = Apt().apply_command(UpdateSelection("pinned", ("libstdc++6=12.2.0-14", "pw-demo=1:1.1~rc1")))
    argv = shlex.split(command.split(";", 1)[1])
    assert argv[-3:] == ["install", "libstdc++6=12.2.0-14", "pw-demo=1:1.1~rc1"]


@pytest.mark.parametrize("pin", ["pw-demo", "=1.0", "pw demo=1.0", ODD, "pw-demo=1.0;reboot"])
def test_apt_rejects_pins_that_are_not_package_equals_version(pin: str) -> None:
    with pytest.raises(PackageManagerError) as info:
        Apt().apply_command(UpdateSelection("pinned", (pin,)))
    assert info.value.code == "invalid_selection"


def test_apt_security_filter_picks_exactly_the_security_candidates_from_real_output() -> None:
    """Runs the shell filter of the security-only command over captured `apt-get -s` output."""
    command = Apt().apply_command(UpdateSelection("security"))
    awk = command.split("| ", 1)[1].split(") ||", 1)[0]
    for case, expected in (("list-updates-chroot", {"pw-demo=1.1"}), ("host-apt-get-s-upgrade", None)):
        stdout = (DATA / "apt" / case / "stdout.txt").read_text()
        pins = subprocess.run(
            ["/bin/sh", "-c", awk], input=stdout, capture_output=True, text=True, check=True
        )
        got = set(pins.stdout.split())
        if expected is None:  # the real mirror: every Debian-Security candidate, nothing else
            expected = {
                f"{line.split()[1]}={line.split('(')[1].split()[0]}"
                for line in stdout.splitlines()
                if line.startswith("Inst ") and "Debian-Security:" in line
            }
            assert len(expected) > 50
        assert got == expected


@pytest.mark.parametrize("pm_class", [Dnf, Zypper])
def test_rpm_pins_are_nevras_and_odd_names_are_quoted(pm_class) -> None:
    command = pm_class().apply_command(
        UpdateSelection("pinned", ("libstdc++-11.4.1-3.el9.x86_64", "perl-IO-Socket-SSL-2.073-1.el9.noarch"))
    )
    tail = shlex.split(command.rsplit(";", 1)[-1] if pm_class is Dnf else command)
    if pm_class is Dnf:
        assert tail[-4:] == [
            "-y",
            "install",
            "libstdc++-11.4.1-3.el9.x86_64",
            "perl-IO-Socket-SSL-2.073-1.el9.noarch",
        ]
    else:
        assert tail[-2:] == ["libstdc++.x86_64=11.4.1-3.el9", "perl-IO-Socket-SSL.noarch=2.073-1.el9"]
    with pytest.raises(PackageManagerError):
        pm_class().apply_command(UpdateSelection("pinned", (ODD,)))


def test_dnf_lock_wait_is_bounded_and_security_only_uses_dnf_filter() -> None:
    pm = Dnf(lock_timeout=42)
    for command in all_commands(pm)[:3]:
        assert "--setopt=exit_on_lock=True" in command and "+ 42 ))" in command
    assert pm.apply_command(UpdateSelection("security")).endswith("pw_dnf -y upgrade --security")


def test_dnf_lock_loop_gives_up_after_the_timeout(tmp_path: Path) -> None:
    """The shell loop itself, with a stand-in `dnf` on PATH that always reports a held lock."""
    fake = tmp_path / "dnf"
    fake.write_text("#!/bin/sh\necho 'RPMDB already locked by 4242' >&2\nexit 200\n")
    fake.chmod(0o755)
    pm = Dnf(lock_timeout=0)
    out = subprocess.run(
        ["/bin/sh", "-c", pm.apply_command(UpdateSelection("all"))],
        check=False,
        capture_output=True,
        text=True,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
    )
    assert out.returncode == 200
    assert "lock still held after 0s" in out.stderr


def test_zypper_waits_through_libzypp_and_patches_security_twice_if_zypper_updated_itself() -> None:
    pm = Zypper(lock_timeout=77)
    for command in all_commands(pm)[:4]:  # all but the rpm query and `zypper ps`
        assert "ZYPP_LOCK_TIMEOUT=77 zypper" in command and "--non-interactive" in command
    security = pm.apply_command(UpdateSelection("security"))
    assert security.count("patch --category security") == 2 and "-eq 103" in security


def test_sections_round_trip_through_a_real_shell() -> None:
    script = "; ".join(
        [section_command("one", "echo hello; echo err >&2; (exit 3)"), section_command("two", "true")]
    )
    out = subprocess.run(["/bin/sh", "-c", script], check=True, capture_output=True, text=True).stdout
    assert split_sections(out) == {"one": ("hello\nerr", 3), "two": ("", 0)}


def test_package_manager_for_each_family_and_unsupported() -> None:
    assert package_manager_for(OsInfo("debian", "12", "debian")).name == "apt"
    assert package_manager_for(OsInfo("rocky", "9.4", "rhel")).name == "dnf"
    assert package_manager_for(OsInfo("sles", "15.5", "suse"), lock_timeout=5).name == "zypper"
    with pytest.raises(PackageManagerError) as info:
        package_manager_for(OsInfo("alpine", "3.20", "unknown"))
    assert info.value.code == "unsupported_os" and not info.value.retryable


def test_listing_without_a_refresh_downloads_no_metadata() -> None:
    apt, dnf, zypper = (package_manager_for(OsInfo(i, "1", f), refresh=False)
                        for i, f in (("debian", "debian"), ("rocky", "rhel"), ("sles", "suse")))  # fmt: skip
    assert apt.list_updates_command() == "apt-get -q -s upgrade --with-new-pkgs"  # no `apt-get update`
    listing = dnf.list_updates_command()
    assert "--refresh" not in listing and listing.count("pw_dnf -q -C ") == 3  # cache only, every query
    assert "--refresh" in Dnf().list_updates_command() and " -C " not in Dnf().list_updates_command()
    for command in (zypper.list_updates_command(), zypper.reboot_required_command()):
        assert command.count("--no-refresh") == command.count(" zypper ") > 0
    assert "--no-refresh" not in Zypper().list_updates_command()


def test_a_listing_that_needs_metadata_it_does_not_have_says_so() -> None:
    no_cache = "Error: Cache-only enabled but no cache for 'baseos'"
    dnf_out = f"### patchwave:check-update\n{no_cache}\n### patchwave:exit=1\n"
    with pytest.raises(PackageManagerError) as cached_only:
        Dnf(refresh=False).parse_updates(ExecResult(1, dnf_out, ""))
    assert cached_only.value.code == "metadata_not_cached"
    with pytest.raises(PackageManagerError) as refreshing:  # with a refresh it is a plain failure
        Dnf().parse_updates(ExecResult(1, dnf_out, ""))
    assert refreshing.value.code == "dnf_failed"
    zypper_out = "### patchwave:list-updates\n<stream></stream>\n### patchwave:exit=106\n"
    with pytest.raises(PackageManagerError) as skipped:
        Zypper(refresh=False).parse_updates(ExecResult(106, zypper_out, ""))
    assert skipped.value.code == "metadata_not_cached"
    assert Zypper().parse_updates(ExecResult(106, zypper_out, "")) == []  # partial, as before


def test_update_selection_validates_its_mode() -> None:
    with pytest.raises(ValueError):
        UpdateSelection("pinned")
    with pytest.raises(ValueError):
        UpdateSelection("everything")  # type: ignore[arg-type]
