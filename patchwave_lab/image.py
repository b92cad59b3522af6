"""Build the lab's Debian bookworm guest image, cached by a content hash of its build inputs.

Recipe (see shared/reference/lab/GUEST-LAB.md §1): ``mmdebstrap --variant=minbase`` with the
merged-usr hook (without it bookworm pulls usrmerge + perl), an essential hook that configures
initramfs-tools before the kernel is installed (``guest-initramfs.sh``), a customize hook that
configures the guest (``guest-customize.sh``), then ``mkfs.ext4 -d`` (no loop mount) and
``qemu-img convert`` to qcow2. The kernel, the Debian initrd and the fast busybox initrd are
copied next to the disk for direct kernel boot.

Cache layout (``$PATCHWAVE_LAB_CACHE`` or ``/var/cache/patchwave/lab``)::

    keys/id_ed25519[.pub]          root's SSH key for every lab guest (generated once)
    images/<key>/                  base.qcow2 vmlinuz initrd.img initrd-fast.img manifest.json
    images/<key>/golden/...        saved running states (see domain.py)
    images/<key>.log               the build log

``<key>`` is the sha256 of: :data:`BUILD_VERSION`, suite, mirror, package list, both hook scripts,
the initrd builder, the host busybox-static binary, demo-app 1.0's .deb, the public key and the
QEMU version. Paths are absolute and must stay the same for a cache to be reused (pitfall 15).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from orchestrator.environment import child_environment
from patchwave_lab import initrd, keys, repo
from patchwave_lab.command import run_command
from patchwave_lab.errors import LabError

log = structlog.get_logger(__name__)

#: Bump when the build steps in this module change in a way the hashed inputs do not capture.
BUILD_VERSION = "1"
SUITE = "bookworm"
#: ``--include`` on top of ``--variant=minbase`` (apt is part of minbase). dbus: logind, needed for
#: agent reboot; udev: starts qemu-guest-agent; busybox: httpd for demo-app; util-linux-extra:
#: hwclock for the agent's guest-set-time; unattended-upgrades: the automatic updater that
#: ``patchwave autoupdates`` manages (it brings python3 and python3-apt).
PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "zstd",
    "qemu-guest-agent",
    "openssh-server",
    "busybox",
    "iproute2",
    "util-linux-extra",
    "unattended-upgrades",
)
DISK_SIZE = "2G"
#: The apt source port written into the image; ``lab up`` rewrites it to the live server's port.
PLACEHOLDER_REPO_PORT = 8000
#: Proxy settings the image build passes on (lower-cased names; apt reads both spellings).
PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
DEFAULT_CACHE = Path("/var/cache/patchwave/lab")
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
BUSYBOX_STATIC = Path("/bin/busybox")
MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")

_HERE = Path(__file__).resolve().parent
CUSTOMIZE_SCRIPT = _HERE / "guest-customize.sh"
INITRAMFS_SCRIPT = _HERE / "guest-initramfs.sh"


@dataclass(frozen=True, slots=True)
class GuestImage:
    key: str
    dir: Path
    disk: Path  # base.qcow2 (read-only backing file of every overlay)
    kernel: Path
    initrd: Path  # the fast busybox initrd
    kernel_version: str
    build_seconds: float  # 0.0 when the image came from the cache
    cached: bool


def cache_dir() -> Path:
    return Path(os.environ.get("PATCHWAVE_LAB_CACHE") or DEFAULT_CACHE)


@contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Serialise builds (and golden creation) between processes sharing one cache."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def debian_mirror(sources: Path = DEBIAN_SOURCES) -> str:
    """The first ``URIs:`` of the deb822 stanza that carries the ``bookworm`` suite."""
    if sources.exists():
        for stanza in sources.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line and not line.startswith(("#", " ")) and ":" in line:
                    name, _, value = line.partition(":")
                    fields[name.strip().lower()] = value.strip()
            if SUITE in fields.get("suites", "").split() and "deb" in fields.get("types", "").split():
                return fields["uris"].split()[0]
    raise LabError(f"no '{SUITE}' deb source in {sources}", code="mirror")


def require_static_busybox(path: Path = BUSYBOX_STATIC) -> Path:
    """The fast initrd has no libc: refuse a dynamically linked busybox (package ``busybox``)."""
    if not path.exists():
        raise LabError(f"{path} is missing: apt-get install busybox-static (.ci/setup-lab.sh)", code="tool")
    with open(path, "rb") as fh:
        header = fh.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:
            raise LabError(f"{path} is not a 64-bit ELF binary", code="tool")
        phoff, phentsize, phnum = (
            int.from_bytes(header[32:40], "little"),
            int.from_bytes(header[54:56], "little"),
            int.from_bytes(header[56:58], "little"),
        )
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    pt_interp = 3
    if any(int.from_bytes(table[i : i + 4], "little") == pt_interp for i in range(0, len(table), phentsize)):
        raise LabError(
            f"{path} is dynamically linked: apt-get install busybox-static (.ci/setup-lab.sh)", code="tool"
        )
    return path


def qemu_version() -> str:
    return run_command(["qemu-system-x86_64", "--version"]).splitlines()[0].strip()


def image_key(mirror: str, demo_deb: Path, pubkey: Path) -> str:
    digest = hashlib.sha256()
    parts: list[bytes] = [
        BUILD_VERSION.encode(),
        SUITE.encode(),
        mirror.encode(),
        ",".join(PACKAGES).encode(),
        DISK_SIZE.encode(),
        str(PLACEHOLDER_REPO_PORT).encode(),
        CUSTOMIZE_SCRIPT.read_bytes(),
        INITRAMFS_SCRIPT.read_bytes(),
        Path(initrd.__file__).read_bytes(),
        require_static_busybox().read_bytes(),
        demo_deb.read_bytes(),
        pubkey.read_bytes(),
        qemu_version().encode(),
    ]
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:24]


def ensure_image(cache: Path | None = None) -> GuestImage:
    """Return the cached image for the current inputs, building it first when missing."""
    cache = cache or cache_dir()
    with cache_lock(cache):
        key_file = keys.ensure_client_key(cache)
        with tempfile.TemporaryDirectory(prefix="pw-lab-deb-") as tmp:
            demo_deb = repo.build_deb(repo.BASE, Path(tmp))
            key = image_key(debian_mirror(), demo_deb, key_file.with_suffix(".pub"))
            final = cache / "images" / key
            if not (final / "manifest.json").exists():
                _build(final, demo_deb, key_file.with_suffix(".pub"))
                _prune(final)
                return _load(final, cached=False)
        (final / "manifest.json").touch()  # its mtime says when the image was last used
        return _load(final, cached=True)


def _prune(keep: Path, *, unused_days: float = 7.0) -> None:
    """Drop other images not used for ``unused_days`` and build directories left by dead builds."""
    horizon = time.time() - unused_days * 86400
    for other in keep.parent.iterdir():
        if other == keep or not other.is_dir():
            continue
        manifest = other / "manifest.json"
        if ".tmp-" in other.name or not manifest.exists() or manifest.stat().st_mtime < horizon:
            shutil.rmtree(other, ignore_errors=True)
            other.with_name(f"{other.name}.log").unlink(missing_ok=True)


def _load(image_dir: Path, *, cached: bool) -> GuestImage:
    manifest = json.loads((image_dir / "manifest.json").read_text())
    return GuestImage(
        key=manifest["key"],
        dir=image_dir,
        disk=image_dir / "base.qcow2",
        kernel=image_dir / "vmlinuz",
        initrd=image_dir / "initrd-fast.img",
        kernel_version=manifest["kernel_version"],
        build_seconds=0.0 if cached else float(manifest["build_seconds"]),
        cached=cached,
    )


def _build(final: Path, demo_deb: Path, pubkey: Path) -> None:
    started = time.monotonic()
    work = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rootfs = work / "rootfs"
    build_log = final.with_name(f"{final.name}.log")
    log.info("lab_image_build_started", key=final.name, log=str(build_log))
    try:
        _bootstrap(rootfs, demo_deb, pubkey, build_log)
        bootstrap_s = time.monotonic() - started
        kernel_version = _copy_boot_files(rootfs, work)
        raw = work / "base.raw"
        run_command(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-L",
                "root",
                "-d",
                str(rootfs),
                "-E",
                "root_owner=0:0",
                str(raw),
                DISK_SIZE,
            ]
        )
        run_command(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "base.qcow2")])
        raw.unlink()
        shutil.rmtree(rootfs)
        build_s = time.monotonic() - started
        manifest = {
            "key": final.name,
            "suite": SUITE,
            "packages": list(PACKAGES),
            "kernel_version": kernel_version,
            "qemu": qemu_version(),
            "bootstrap_seconds": round(bootstrap_s, 1),
            "build_seconds": round(build_s, 1),
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log.info(
        "lab_image_built", key=final.name, seconds=round(build_s, 1), bootstrap_seconds=round(bootstrap_s, 1)
    )


def _bootstrap(rootfs: Path, demo_deb: Path, pubkey: Path, build_log: Path) -> None:
    mirror = debian_mirror()
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--format=directory",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        f"--hook-dir={MERGED_USR_HOOK}",
        '--aptopt=Acquire::Languages "none"',
        '--aptopt=APT::Install-Recommends "false"',
        '--aptopt=Acquire::Check-Valid-Until "false"',
        '--aptopt=Acquire::Check-Date "false"',
        "--dpkgopt=force-unsafe-io",
        f'--essential-hook=sh {INITRAMFS_SCRIPT} "$1"',
        f'--customize-hook=sh {CUSTOMIZE_SCRIPT} "$1"',
        SUITE,
        str(rootfs),
        f"deb {mirror} {SUITE} main",
    ]
    proxies = {name: value for name, value in os.environ.items() if name.lower() in PROXY_VARIABLES}
    env = child_environment(
        {
            **proxies,  # mmdebstrap downloads from the mirror: a proxy the operator set still applies
            "PW_PUBKEY": str(pubkey),
            "PW_DEMO_DEB": str(demo_deb),
            "PW_REPO_PORT": str(PLACEHOLDER_REPO_PORT),
            "DEBIAN_FRONTEND": "noninteractive",
        }
    )
    with open(build_log, "w") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        tail = build_log.read_text(errors="replace")[-3000:]
        raise LabError(f"mmdebstrap failed ({proc.returncode}); log {build_log}:\n{tail}", code="image_build")


def _copy_boot_files(rootfs: Path, out: Path) -> str:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise LabError(f"no kernel in {rootfs}/boot", code="image_build")
    version = kernels[-1].name.removeprefix("vmlinuz-")
    shutil.copyfile(kernels[-1], out / "vmlinuz")
    shutil.copyfile(rootfs / "boot" / f"initrd.img-{version}", out / "initrd.img")
    initrd.build_fast_initrd(rootfs / "usr/lib/modules" / version, BUSYBOX_STATIC, out / "initrd-fast.img")
    return version
