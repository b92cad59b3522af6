"""The backup contract's values and the adapters' pure helpers: ownership text and names, probe
retries against an injected clock, PVE notes/NIC rewriting, libvirt backup and copy XML, settings."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from patchwave_lab.domain import GuestSpec, domain_xml
from providers.backups import BackupOwnership, RestoreProbe, run_probes
from providers.base import ExecResult, SnapshotOwnership
from providers.errors import GuestAgentUnavailable
from providers.libvirt import backup_xml
from providers.libvirt.settings import parse_settings as libvirt_settings
from providers.proxmox.backups import archived_nets, isolated_net, notes_template
from providers.proxmox.settings import parse_settings as proxmox_settings
from providers.settings import Secret, SettingsError
from providers.vsphere.settings import parse_settings as vsphere_settings

OWNER = BackupOwnership("run-1", "backup:web-1", "qemu/100", "2026-11-28T21:00:00+00:00")


# ------------------------------------------------------------------------------ ownership


def test_ownership_round_trips_through_its_text() -> None:
    restore = BackupOwnership(
        "run-1", "verify:web-1", "qemu/100", "2026-11-28T22:00:00+00:00", "restore", "vol-1"
    )
    for owner in (OWNER, restore):
        text = owner.to_text()
        assert "\n" not in text and text.startswith("patchwave-backup:")
        assert BackupOwnership.from_text(text) == owner
        assert BackupOwnership.from_text(text + "\nnotes a person added") == owner


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "nightly backup",
        'patchwave-backup:{"run": "r"}',  # incomplete
        'patchwave-backup:{"run":"r","step":"s","vm":"v","created":"c","role":"other"}',
        SnapshotOwnership("run-1", "snap", "2026-11-28T21:00:00+00:00").to_description(),
    ],
)
def test_text_without_a_backup_ownership_is_nobodys(text: str | None) -> None:
    assert BackupOwnership.from_text(text) is None


def test_same_owner_ignores_only_the_creation_time() -> None:
    later = BackupOwnership(OWNER.run_id, OWNER.step_id, OWNER.vm_id, "2027-01-01T00:00:00+00:00")
    assert OWNER.same_owner(later)
    for other in (
        BackupOwnership("run-2", OWNER.step_id, OWNER.vm_id, OWNER.created_at),
        BackupOwnership(OWNER.run_id, "backup:db-1", OWNER.vm_id, OWNER.created_at),
        BackupOwnership(OWNER.run_id, OWNER.step_id, "qemu/101", OWNER.created_at),
        BackupOwnership(OWNER.run_id, OWNER.step_id, OWNER.vm_id, OWNER.created_at, "restore"),
    ):
        assert not OWNER.same_owner(other)
    assert not OWNER.same_owner(None)


def test_names_are_deterministic_dns_safe_and_distinct() -> None:
    name = OWNER.name("Web_1.example.org (prod)")
    assert name == OWNER.name("Web_1.example.org (prod)")
    assert re.fullmatch(r"pw-bk-[a-z0-9-]+-[0-9a-f]{12}", name) and len(name) <= 40
    copy = BackupOwnership(OWNER.run_id, OWNER.step_id, OWNER.vm_id, OWNER.created_at, "restore", "b1")
    assert copy.name("web-1").startswith("pw-rv-web-1-")
    names = {
        OWNER.name("web-1"),
        copy.name("web-1"),
        BackupOwnership("run-2", OWNER.step_id, OWNER.vm_id, OWNER.created_at).name("web-1"),
        BackupOwnership(OWNER.run_id, OWNER.step_id, OWNER.vm_id, OWNER.created_at, "restore", "b2").name(
            "web-1"
        ),
    }
    assert len(names) == 4


# ------------------------------------------------------------------------------ probes


class StepClock:
    """Monotonic time that moves only when slept (or by ``cost`` per command)."""

    def __init__(self) -> None:
        self.t = 0.0

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def now(self):  # pragma: no cover - unused here
        raise NotImplementedError


def test_a_probe_is_tried_again_until_it_passes() -> None:
    clock, answers = StepClock(), iter([ExecResult(7, "", "not yet"), ExecResult(7), ExecResult(0, "ok\n")])
    results = run_probes(
        lambda argv, t: next(answers),
        [RestoreProbe("health", ("wget",), interval=2)],
        deadline=60,
        clock=clock,
    )
    assert [(r.name, r.ok, r.exit_code, r.output, r.attempts) for r in results] == [
        ("health", True, 0, "ok", 3)
    ]
    assert clock.t == 4.0


def test_a_probe_that_never_passes_fails_at_the_deadline_with_its_last_output() -> None:
    clock = StepClock()

    def run(argv: tuple[str, ...], timeout: float) -> ExecResult:
        if clock.t < 5:
            raise GuestAgentUnavailable("agent gone", code="agent_unresponsive")
        return ExecResult(1, "", "404 Not Found")

    (result,) = run_probes(run, [RestoreProbe("health", ("wget",), interval=2)], deadline=10, clock=clock)
    assert (result.ok, result.exit_code, result.output) == (False, 1, "404 Not Found")
    assert result.attempts == 5 and clock.t == 8.0


# ------------------------------------------------------------------------------ Proxmox helpers


def test_the_notes_template_renders_back_to_the_ownership_text() -> None:
    text = 'patchwave-backup:{"run":"a\\\\b"}'
    template = notes_template(text)
    rendered = re.sub(r"\\(.)", lambda m: "\\" if m.group(1) == "\\" else "\n", template)  # vzdump's unescape
    assert rendered == text


@pytest.mark.parametrize(
    ("net", "isolated"),
    [
        ("virtio=BC:24:11:00:00:64,bridge=vmbr0,firewall=1", "virtio,bridge=vmbr0,firewall=1,link_down=1"),
        (
            "model=e1000,macaddr=BC:24:11:00:00:65,bridge=vmbr1,link_down=0",
            "model=e1000,bridge=vmbr1,link_down=1",
        ),
        ("virtio,bridge=vmbr0,tag=20", "virtio,bridge=vmbr0,tag=20,link_down=1"),
    ],
)
def test_restored_nics_lose_their_mac_and_their_link(net: str, isolated: str) -> None:
    assert isolated_net(net) == isolated


def test_only_the_current_sections_nics_are_read_from_the_archived_config() -> None:
    config = "#web server\nname: web-1\nnet0: virtio=BC:24:11:00:00:64,bridge=vmbr0\nnet1: e1000,bridge=vmbr1\n\n[pre]\nnet2: virtio,bridge=x\n"
    assert archived_nets(config) == {
        "net0": "virtio=BC:24:11:00:00:64,bridge=vmbr0",
        "net1": "e1000,bridge=vmbr1",
    }


# ------------------------------------------------------------------------------ libvirt XML


def _lab_xml(tmp_path: Path) -> str:
    spec = GuestSpec(
        "pw-lab-1", tmp_path / "disk.qcow2", 2222, 8080, tmp_path / "console.log", owner=str(tmp_path)
    )
    image = type("Image", (), {"kernel": tmp_path / "vmlinuz", "initrd": tmp_path / "initrd.img"})()
    xml = domain_xml(spec, image)  # type: ignore[arg-type]
    return xml.replace(
        "<devices>", "<devices><disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>", 1
    )


def test_the_backup_xml_writes_every_disk_and_skips_cdroms(tmp_path: Path) -> None:
    xml = _lab_xml(tmp_path)
    assert backup_xml.backup_disks(xml) == (backup_xml.Disk("vda", str(tmp_path / "disk.qcow2"), "qcow2"),)
    document = ET.fromstring(backup_xml.backup_xml(xml, {"vda": "/b/vda.qcow2"}))
    assert document.get("mode") == "push"
    assert [(d.get("name"), d.get("backup")) for d in document.iter("disk")] == [
        ("hdc", "no"),
        ("vda", "yes"),
    ]
    assert backup_xml.backup_targets(backup_xml.backup_xml(xml, {"vda": "/b/vda.qcow2"})) == ("/b/vda.qcow2",)


def test_a_restored_copy_has_no_network_its_own_disks_and_console_and_our_marker(tmp_path: Path) -> None:
    text = BackupOwnership("r", "s", "u", "c", "restore", "b").to_text()
    copy = backup_xml.restored_domain_xml(
        _lab_xml(tmp_path),
        name="pw-rv-x",
        overlays={"vda": "/c/vda.qcow2"},
        console_log="/c/console.log",
        ownership=text,
    )
    root = ET.fromstring(copy)
    assert root.findtext("name") == "pw-rv-x" and root.find("uuid") is None
    assert root.find("devices/interface") is None and "hostfwd" not in copy and "commandline" not in copy
    assert [d.find("source").get("file") for d in root.iterfind("devices/disk")] == ["/c/vda.qcow2"]
    assert {s.get("path") for s in root.iterfind("devices/serial/source")} == {"/c/console.log"}
    assert root.findtext("os/kernel") == str(tmp_path / "vmlinuz"), "direct kernel boot is kept"
    assert backup_xml.boot_files(copy) == (str(tmp_path / "vmlinuz"), str(tmp_path / "initrd.img"))
    marker = root.find(f"metadata/{{{backup_xml.BACKUP_NS}}}backup")
    assert (
        marker is not None
        and marker.text == text
        and root.find("metadata/{https://patchwave.dev/xmlns/tags/1}tags") is None
    )


# ------------------------------------------------------------------------------ settings


def test_backup_targets_in_the_provider_tables() -> None:
    pve = proxmox_settings("pve", {"host": "pve1", "password": Secret("x"), "backup_storage": "backup-nfs"})
    assert (pve.backup_storage, pve.backup_mode, pve.backup_compress) == ("backup-nfs", "snapshot", "zstd")
    with pytest.raises(SettingsError, match="backup_storage"):
        proxmox_settings("pve", {"host": "pve1", "password": Secret("x"), "backup_storage": "bad storage"})
    with pytest.raises(SettingsError, match="backup_mode"):
        proxmox_settings("pve", {"host": "pve1", "password": Secret("x"), "backup_mode": "snap"})
    assert libvirt_settings("lab", {"uri": "qemu:///system", "backup_dir": "/srv/bk"}).backup_dir == Path(
        "/srv/bk"
    )
    with pytest.raises(SettingsError, match="absolute"):
        libvirt_settings("lab", {"uri": "qemu:///system", "backup_dir": "bk"})
    vs = vsphere_settings(
        "vc", {"host": "vc", "user": "u", "password": Secret("p"), "backup_folder": "/pw/backups/"}
    )
    assert vs.backup_folder == "pw/backups"
    with pytest.raises(SettingsError, match="backup_folder"):
        vsphere_settings("vc", {"host": "vc", "user": "u", "password": Secret("p"), "backup_folder": "a//b"})
