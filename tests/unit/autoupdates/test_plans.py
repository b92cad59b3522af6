"""``plan(os_info, policy)``: the files and units per OS family and mode (pure), and the policy."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.autoupdates import AutoUpdateError, plan, resolve_policy
from orchestrator.autoupdates import debian as deb
from orchestrator.autoupdates.change import apply_command
from orchestrator.autoupdates.pause import pause_command, restore_command
from orchestrator.autoupdates.policy import schedule_runs_short, window_openings
from orchestrator.autoupdates.status import status_command
from orchestrator.autoupdates.units import updater_for
from orchestrator.config.autoupdates import AutoUpdateSettings
from orchestrator.guests.osinfo import OsInfo
from orchestrator.windows import WindowSpec
from tests.support.paths import DATA

FILES = DATA / "guests" / "autoupdates" / "files"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
DEBIAN = OsInfo("debian", "12", "debian", "Debian GNU/Linux 12 (bookworm)")
UBUNTU = OsInfo("ubuntu", "24.04", "debian", "Ubuntu 24.04 LTS", ("debian",))
ROCKY = OsInfo("rocky", "9.4", "rhel", "Rocky Linux 9.4 (Blue Onyx)", ("rhel", "centos", "fedora"))
FEDORA = OsInfo("fedora", "41", "rhel", "Fedora Linux 41")
SLES = OsInfo("sles", "15.6", "suse", "SUSE Linux Enterprise Server 15 SP6")
LAB_ORIGIN = "origin=patchwave-lab,codename=${distro_codename}-security,label=patchwave-lab-Security"
WEEKEND = WindowSpec("weekend", "0 22 * * SAT", 6 * 3600, "Europe/Berlin", blackout_dates=("2026-12-26",))


def policy(
    mode: str = "coexist", *, pins: tuple[str, ...] = (), window: WindowSpec | None = None, **kw: object
):
    return resolve_policy(AutoUpdateSettings(mode=mode, **kw), now=NOW, group="web", window=window, pins=pins)  # type: ignore[arg-type]


def files(change) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {f.path: f.content for f in change.files}


# ------------------------------------------------------------------------------ Debian / Ubuntu
def test_debian_security_only_file_sorts_after_the_distributions_and_clears_its_origin_lists() -> None:
    change = plan(DEBIAN, policy(origins=(LAB_ORIGIN,)))
    conf = files(change)[deb.CONF_PATH]
    name = deb.CONF_PATH.rsplit("/", 1)[1]
    # apt reads apt.conf.d in byte order: ours must come after 50unattended-upgrades (a later file's
    # list entries are appended, so the distribution's main-archive origin would come back) ...
    assert max([name, "50unattended-upgrades", "52unattended-upgrades-local"]) == name
    assert min(["50patchwave-unattended-upgrades", "50unattended-upgrades"]).startswith("50patchwave")
    # ... and the lists are cleared before they are set
    lines = conf.splitlines()
    assert lines.index("#clear Unattended-Upgrade::Origins-Pattern;") < lines.index(
        "Unattended-Upgrade::Origins-Pattern {"
    )
    assert "#clear Unattended-Upgrade::Allowed-Origins;" in lines
    assert '        "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";' in lines
    assert f'        "{LAB_ORIGIN}";' in lines
    assert 'label=Debian";' not in conf  # never the main archive
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in lines
    assert 'Unattended-Upgrade::SyslogEnable "true";' in lines
    assert "Package-Blacklist" not in conf  # nothing pinned


def test_debian_periodic_switch_is_byte_for_byte_the_packages_own_file() -> None:
    on = files(plan(DEBIAN, policy()))[deb.PERIODIC_PATH]
    off = files(plan(DEBIAN, policy("off")))[deb.PERIODIC_PATH]
    assert on == (FILES / "20auto-upgrades").read_text()  # no ucf conflict on the next package upgrade
    assert off == (FILES / "20auto-upgrades-disabled").read_text()


def test_the_distribution_default_allows_the_main_archive_which_is_why_the_list_is_cleared() -> None:
    default = (FILES / "50unattended-upgrades").read_text()
    assert '"origin=Debian,codename=${distro_codename},label=Debian";' in default


def test_debian_on_modes_unmask_enable_the_timers_guard_the_services_and_install_when_missing() -> None:
    change = plan(DEBIAN, policy("security", mail="ops@example.com"))
    assert change.updater == "unattended-upgrades"
    assert change.unmask == (
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "apt-daily.service",
        "apt-daily-upgrade.service",
    )
    assert change.enable == ("apt-daily.timer", "apt-daily-upgrade.timer")
    assert change.disable == ("patchwave-autoupdates-reboot.timer",)  # no window: no reboot timer
    assert "/etc/systemd/system/apt-daily-upgrade.service.d/50-patchwave-pause.conf" in files(change)
    assert (
        "install --no-upgrade unattended-upgrades" in change.install
        and "DPkg::Lock::Timeout=600" in change.install
    )
    conf = files(change)[deb.CONF_PATH]
    assert 'Unattended-Upgrade::Mail "ops@example.com";' in conf and 'MailReport "on-change";' in conf
    assert not plan(DEBIAN, policy("security", install=False)).install


def test_when_needed_reboots_right_away_and_window_reboots_at_the_windows_openings() -> None:
    now_conf = files(plan(DEBIAN, policy(reboot="when-needed")))[deb.CONF_PATH]
    assert 'Automatic-Reboot "true";' in now_conf and 'Automatic-Reboot-Time "now";' in now_conf
    change = plan(DEBIAN, policy(reboot="window", window=WEEKEND))
    conf, timer = (
        files(change)[deb.CONF_PATH],
        files(change)["/etc/systemd/system/patchwave-autoupdates-reboot.timer"],
    )
    assert 'Automatic-Reboot "false";' in conf  # the timer reboots, not unattended-upgrades
    # Saturdays 22:00 Berlin = 21:00 UTC; 2026-12-26 is a blackout date, so it is skipped
    assert "OnCalendar=2026-12-05 21:00:00 UTC\nOnCalendar=2026-12-12 21:00:00 UTC\nOnCalendar=2026-12-19 21:00:00 UTC\n" \
        "OnCalendar=2027-01-02 21:00:00 UTC" in timer  # fmt: skip
    assert "Persistent=false" in timer  # a missed opening never fires later, outside the window
    script = files(change)["/usr/local/sbin/patchwave-autoupdates-reboot"]
    assert "[ -e /var/run/reboot-required ]" in script and "exec systemctl reboot" in script
    service = files(change)["/etc/systemd/system/patchwave-autoupdates-reboot.service"]
    assert "ConditionPathExists=!/var/lib/patchwave/autoupdates.paused" in service
    assert "patchwave-autoupdates-reboot.timer" in change.enable and not change.disable


def test_coexist_holds_pinned_packages_with_regexes_apt_conf_can_carry() -> None:
    change = plan(DEBIAN, policy(pins=("demo-app=1.1", "libstdc++6=12.2.0-14", "python3.11=3.11.2-6")))
    assert change.holds == ("demo-app", "libstdc++6", "python3.11")
    conf = files(change)[deb.CONF_PATH]
    for entry in ('"^demo-app$";', '"^libstdc[+][+]6$";', '"^python3[.]11$";'):
        assert entry in conf
    assert "\\" not in conf  # apt.conf values may not contain backslashes
    assert not plan(DEBIAN, policy("security", pins=("demo-app=1.1",))).holds  # only coexist holds


def test_ubuntu_gets_its_security_pockets_and_an_unknown_debian_derivative_needs_origins() -> None:
    conf = files(plan(UBUNTU, policy()))[deb.CONF_PATH]
    assert '"origin=${distro_id},archive=${distro_codename}-security";' in conf
    assert '"origin=${distro_id}ESMApps,archive=${distro_codename}-apps-security";' in conf
    devuan = OsInfo("devuan", "5", "debian", "Devuan GNU/Linux 5 (daedalus)")
    with pytest.raises(AutoUpdateError) as refused:
        plan(devuan, policy())
    assert refused.value.code == "no_origins"
    assert files(plan(devuan, policy(origins=("origin=Devuan,codename=${distro_codename}-security",))))


def test_off_disables_the_timers_and_removes_patchwaves_own_files_but_keeps_the_guards() -> None:
    change = plan(DEBIAN, policy("off"))
    assert change.disable == (
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "patchwave-autoupdates-reboot.timer",
    )
    assert deb.CONF_PATH in change.remove and not change.enable and not change.install
    assert "/etc/systemd/system/apt-daily.service.d/50-patchwave-pause.conf" in files(change)


def test_unmanaged_changes_nothing_anywhere_even_on_suse() -> None:
    for os_info in (DEBIAN, ROCKY, SLES):
        assert plan(os_info, policy("unmanaged")).empty


# ------------------------------------------------------------------------------ RHEL family, SUSE
def test_rhel_writes_automatic_conf_for_security_updates_and_enables_dnf_automatic_timer() -> None:
    change = plan(ROCKY, policy(pins=("demo-app-1.1-1.el9.noarch",), mail="ops@example.com"))
    conf = files(change)["/etc/dnf/automatic.conf"]
    for line in ("upgrade_type = security", "apply_updates = yes", "download_updates = yes", "reboot = never",
                 "emit_via = stdio, email", "email_to = ops@example.com", "excludepkgs = demo-app"):  # fmt: skip
        assert line in conf.splitlines()
    assert next(f for f in change.files if f.path == "/etc/dnf/automatic.conf").keep_original
    assert change.enable == ("dnf-automatic.timer",) and change.updater == "dnf-automatic"
    assert "pw_dnf -y install dnf-automatic" in change.install
    assert "/etc/systemd/system/dnf-automatic-install.service.d/50-patchwave-pause.conf" in files(change)


def test_fedora_41_uses_dnf5s_timer_and_when_needed_uses_dnfs_reboot_command() -> None:
    change = plan(FEDORA, policy(reboot="when-needed"))
    assert change.enable == ("dnf5-automatic.timer",) and change.updater == "dnf5-automatic"
    conf = files(change)["/etc/dnf/automatic.conf"]
    assert "reboot = when-needed" in conf
    assert "reboot_command = \"shutdown -r +5 'Rebooting after applying package updates'\"" in conf
    assert updater_for(OsInfo("fedora", "40", "rhel")).name == "dnf-automatic"


def test_suse_and_unknown_systems_are_refused_with_the_supported_alternative() -> None:
    with pytest.raises(AutoUpdateError) as suse:
        plan(SLES, policy())
    assert suse.value.code == "unsupported_os" and "zypper patch" in str(suse.value)
    assert 'use mode "unmanaged"' in str(suse.value)
    with pytest.raises(AutoUpdateError) as alpine:
        plan(OsInfo("alpine", "3.20", "unknown"), policy("off"))
    assert alpine.value.code == "unsupported_os"


# ------------------------------------------------------------------------------ policy
def test_a_window_reboot_without_a_window_is_refused_when_the_policy_is_resolved() -> None:
    with pytest.raises(AutoUpdateError) as refused:
        policy(reboot="window")
    assert refused.value.code == "no_window"
    assert policy("off", reboot="window").reboot_times == ()  # off never reboots


def test_window_openings_are_the_planners_occurrences_within_the_horizon() -> None:
    times = window_openings(WEEKEND, NOW, timedelta(days=28))
    assert times == ("2026-12-05 21:00:00", "2026-12-12 21:00:00", "2026-12-19 21:00:00")  # 12-26: blackout
    hourly = WindowSpec("hourly", "0 * * * *", 1800, "UTC")
    assert len(window_openings(hourly, NOW, timedelta(days=60))) == 100  # capped


def test_a_reboot_schedule_runs_short_when_a_quarter_is_left() -> None:
    times = window_openings(WEEKEND, NOW, timedelta(days=60))
    assert not schedule_runs_short(times, NOW)
    assert len(times) == 8 and not schedule_runs_short(times, datetime(2027, 1, 20, tzinfo=UTC))  # 2 left
    assert schedule_runs_short(times, datetime(2027, 1, 24, tzinfo=UTC))  # 1 left: apply again
    assert schedule_runs_short((), NOW)


# ------------------------------------------------------------------------------ the scripts
@pytest.mark.skipif(shutil.which("dash") is None, reason="dash (Debian's /bin/sh) checks POSIX sh syntax")
@pytest.mark.parametrize("os_info", [DEBIAN, UBUNTU, ROCKY, FEDORA, SLES], ids=lambda o: o.id)
@pytest.mark.parametrize("mode", ["off", "security", "coexist"])
def test_every_generated_script_is_valid_posix_sh(os_info: OsInfo, mode: str) -> None:
    wanted = policy(mode, pins=("demo-app=1.1",), reboot="window" if mode != "off" else "never", window=WEEKEND,
                    mail="root", origins=(LAB_ORIGIN,))  # fmt: skip
    updater = updater_for(os_info)
    change = plan(os_info, wanted) if os_info.family != "suse" else plan(os_info, policy("unmanaged"))
    for script in (apply_command(change), status_command(os_info),
                   pause_command(updater, "run-1", "vm:site:1", wait_s=10), restore_command("run-1"),
                   restore_command("run-1", any_run=True)):  # fmt: skip
        checked = subprocess.run(["dash", "-n", "-c", script], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
    for content in (f.content for f in change.files if f.path.startswith("/usr/local/sbin/")):
        checked = subprocess.run(["dash", "-n", "-c", content], capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr


def test_pause_flushes_its_guards_and_marker_to_disk_before_it_stops_a_timer() -> None:
    script = pause_command(updater_for(DEBIAN), "run-1", "vm:site:1", wait_s=10)
    flush = script.index('sync "$m" "$(dirname "$m")" ')
    assert script.index('> "$m.tmp.$$" && mv -f') < flush < script.index('systemctl stop "$u"')
    for path in (
        "/etc/systemd/system/apt-daily-upgrade.service.d",
        "/etc/systemd/system/apt-daily.service.d",
    ):
        assert path in script[flush : script.index(";", flush)]


def test_pause_markers_only_carry_safe_ids() -> None:
    with pytest.raises(ValueError, match="run id"):
        pause_command(updater_for(DEBIAN), "run 1; rm -rf /", "vm:1", wait_s=1)


def test_suse_status_reports_a_pause_and_the_last_run_but_compares_nothing() -> None:
    from orchestrator.autoupdates.status import parse_status
    from providers.base import ExecResult

    found = parse_status(ExecResult(exit_code=0, stdout=""), SLES, policy("coexist"), now=NOW)
    assert (found.installed, found.drift, found.updater) == (False, (), "transactional-update")
    assert any("not supported" in note for note in found.notes)
