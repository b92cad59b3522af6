"""``patchwave run --dry-run`` describes what a run would do and changes nothing (real CLI processes).

The test bed is tests/support/testbed.py's — fake Debian guests behind the real ``local`` channel —
on the libvirt test driver *of libvirtd* (``test+unix:///default``): one driver state in the daemon,
shared by every connection of every process, so the snapshot a ``patchwave run`` process made is
still there for the dry-run process and for this test to look at (a node file, ``test:///<file>``, is
a fresh copy per connection, and ``test:///default`` lives in one process).

Before the dry run: a real ``patchwave run`` patched both guests (its records are in facts.db, its
Temporal history in temporal.db, its notifications reached a local HTTP receiver, its snapshots
are kept for the TTL); the test moved the expiry of those snapshots into the past (a run's cleanup
deletes them now) and the fake repository offers newer versions. Then ``run --dry-run`` must list
the planned VMs with those pending updates and the snapshots a run would delete, and leave
everything as it was: facts.db and temporal.db byte for byte, the state directory's files, the
snapshots in libvirt, the receiver (nothing posted), the guests (nothing installed).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.loopback import unused_port
from tests.support.paths import REPO
from tests.support.receiver import Endpoint, receiving
from tests.support.testbed import DriverBed, GuestSpec, build, domain_xml

pytestmark = pytest.mark.e2e

DAEMON_URI = "test+unix:///default"
NEWER = {"demo-app": "1.2", "openssl": "3.0.16"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/install starts libvirtd)", pytrace=False)
    pytest.skip(f"{reason}; start libvirtd (.ci/install) to enable this test")


@pytest.fixture
def domains() -> Iterator[dict[str, str]]:
    """name -> uuid of two running domains of libvirtd's test driver; removed with their snapshots."""
    libvirt = pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    try:
        conn = libvirt.open(DAEMON_URI)
    except libvirt.libvirtError as exc:
        _unavailable(f"libvirtd does not answer on {DAEMON_URI}: {exc.get_error_message()}")
    tag = uuid.uuid4().hex[:8]
    made = []
    try:
        for index in (1, 2):
            dom = conn.defineXML(domain_xml(f"pw-dry-{tag}-{index}", str(uuid.uuid4())))
            made.append(dom)
            dom.create()
        yield {dom.name(): dom.UUIDString() for dom in made}
    finally:
        for dom in made:
            for snap in dom.listAllSnapshots():
                snap.delete()
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        conn.close()


@pytest.fixture
def receiver() -> Iterator[Endpoint]:
    with receiving() as endpoint:
        yield endpoint


@pytest.fixture
def bed(tmp_path: Path, domains: dict[str, str], receiver: Endpoint) -> DriverBed:
    specs = tuple(GuestSpec(name) for name in sorted(domains))
    made = build(tmp_path / "bed", specs, port=unused_port(), uri=DAEMON_URI, uuids=domains, ttl="2h")
    with made.config.open("a") as config:
        config.write(f'\n[notifications]\nurls = ["{receiver.url()}"]\n')
    return made


def patchwave(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "--log-format", "json", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def files(directory: Path) -> dict[str, tuple[str, int]]:
    """name -> (sha256, mtime) of every file in ``directory``."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def row_counts(facts_db: Path) -> dict[str, int]:
    with closing(sqlite3.connect(f"file:{facts_db}?mode=ro&immutable=1", uri=True)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}


def expire_snapshots(facts_db: Path, run_id: str) -> str:
    """Move the recorded expiry of ``run_id``'s snapshots an hour into the past (test setup)."""
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
    with closing(sqlite3.connect(facts_db)) as db, db:
        db.execute("UPDATE snapshots SET expires_at = ? WHERE run_id = ?", (past, run_id))
    return past


def libvirt_snapshots(domains: dict[str, str]) -> dict[str, list[str]]:
    import libvirt

    with closing(libvirt.open(DAEMON_URI)) as conn:
        return {
            name: sorted(s.getName() for s in conn.lookupByName(name).listAllSnapshots()) for name in domains
        }


def test_a_dry_run_lists_pending_updates_and_changes_nothing(
    tmp_path: Path, bed: DriverBed, domains: dict[str, str], receiver: Endpoint
) -> None:
    before = patchwave("-c", str(bed.config), "run", "--run-id", "run-before", cwd=tmp_path)
    assert before.returncode == 0, before.stdout[-3000:] + before.stderr[-3000:]
    assert receiver.paths(), "the real run's notifications reach the receiver"
    snapshots = libvirt_snapshots(domains)
    assert all(len(names) == 1 for names in snapshots.values()), snapshots
    expire_snapshots(bed.state / "facts.db", "run-before")
    for guest in bed.guests.values():  # newer versions published since the run
        (guest.state / "repo").write_text("".join(f"{n} {v}\n" for n, v in sorted(NEWER.items())))

    state, posts = files(bed.state), len(receiver.posts)
    counts = row_counts(bed.state / "facts.db")
    guests = {name: (g.installed(), g.upgrades(), g.patches()) for name, g in bed.guests.items()}
    assert {"facts.db", "temporal.db"} <= set(state)

    shown = patchwave("-c", str(bed.config), "run", "--dry-run", cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    assert "Traceback" not in shown.stderr
    assert shown.stdout.rstrip().endswith("dry run: nothing was changed")
    for name in domains:
        assert f"td/{name}" in shown.stdout
    assert "demo-app 1.1->1.2" in shown.stdout and "openssl 3.0.15->3.0.16" in shown.stdout
    for name in snapshots.values():  # the snapshots a run's cleanup would delete are named
        assert name[0] in shown.stdout

    as_json = patchwave("-c", str(bed.config), "run", "--dry-run", "--output", "json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr[-3000:]
    described = json.loads(as_json.stdout)
    pending = {
        vm["step"]["vm"]["name"]: [(u["name"], u["candidate"]) for u in vm["updates"]]
        for vm in described["vms"]
    }
    assert pending == {name: sorted(NEWER.items()) for name in domains}
    assert len(described["expired_snapshots"]) == 2

    # Nothing changed: the fact store and the Temporal database byte for byte (and no file appeared
    # or vanished in the state directory), the platform's snapshots, the receiver, the guests.
    assert files(bed.state) == state
    assert row_counts(bed.state / "facts.db") == counts
    assert libvirt_snapshots(domains) == snapshots
    assert len(receiver.posts) == posts
    assert {name: (g.installed(), g.upgrades(), g.patches()) for name, g in bed.guests.items()} == guests


def test_a_dry_run_on_a_fresh_state_directory_creates_nothing(
    tmp_path: Path, bed: DriverBed, domains: dict[str, str], receiver: Endpoint
) -> None:
    fresh = tmp_path / "fresh"
    shown = patchwave(
        "-c", str(bed.config), "--state-dir", str(fresh / "state"), "run", "--dry-run", cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    assert "demo-app 1.0->1.1" in shown.stdout and "no fact store at" in shown.stdout
    assert not fresh.exists() and not bed.state.exists()
    assert receiver.posts == [] and libvirt_snapshots(domains) == {name: [] for name in domains}
    assert all(g.upgrades() == 0 and g.installed() == {"demo-app": "1.0", "openssl": "3.0.11"}
               for g in bed.guests.values())  # fmt: skip


def test_a_guest_whose_channel_fails_is_shown_not_assessed(
    tmp_path: Path, bed: DriverBed, domains: dict[str, str]
) -> None:
    first, second = sorted(domains)
    broken = bed.guests[second]
    (broken.root / "usr/sbin/apt-get").write_text(
        "#!/bin/sh\necho 'E: the guest is in a bad way' >&2\nexit 100\n"
    )
    shown = patchwave("-c", str(bed.config), "run", "--dry-run", cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout[-3000:] + shown.stderr[-3000:]
    assert "Traceback" not in shown.stdout + shown.stderr
    lines = {
        name: next(line for line in shown.stdout.splitlines() if f"td/{name} " in line) for name in domains
    }
    assert "not assessed: " in lines[second] and "demo-app 1.0->1.1" in lines[first]
    assert not bed.state.exists()
