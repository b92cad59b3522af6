"""Re-create the ``packages-local`` rpm capture (provenance record; not run by the tests).

Builds three noarch RPMs with rpmbuild (Debian 12's rpm 4.18.0): ``pw-demo`` (epoch 1) and its
subpackage ``pw-demo-libs`` from one source RPM, and ``pw-tool`` (no epoch); installs them into a
fresh rpm database under a root directory (``rpm --root R --initdb``, ``rpm --root R -i --nodeps``)
and imports OpenPGP keys (``rpm --import``), which rpm lists as ``gpg-pubkey`` pseudo-packages
without a source RPM. Then runs ``Dnf(root=R).packages_command()`` (``rpm -qa --qf`` with the source
RPM) through the real ``LocalChannel``. This machine's own package state is never touched.

    .venv/bin/python tests/data/guests/dnf/capture_packages.py /tmp/pw-assess-rpm/root
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from orchestrator.guests.channel import LocalChannel
from orchestrator.guests.packages.dnf import Dnf

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    root = sys.argv[1]
    manager = Dnf(root=root)
    command = manager.packages_command()
    result = LocalChannel().run(command, timeout=60)
    case = HERE / "packages-local"
    case.mkdir(exist_ok=True)
    (case / "stdout.txt").write_text(result.stdout)
    (case / "stderr.txt").write_text(result.stderr)
    meta = {"command": command.replace(root, "/tmp/root"), "exit_code": result.exit_code,
            "parser": "packages", "source": "rpm 4.18.0 database under a root directory (capture_packages.py)"}  # fmt: skip
    (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    parsed = [dataclasses.asdict(p) for p in manager.parse_packages(result)]
    (case / "expected.json").write_text(json.dumps({"result": parsed}, indent=2) + "\n")
