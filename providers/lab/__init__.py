"""The real Debian guest lab: libvirt/QEMU (TCG) guests with demo-app and a local apt repo.

``up`` / ``down`` / ``status`` / ``publish`` are the API (also ``python -m providers.lab``);
see :mod:`providers.lab.lab`. Modules: ``image`` (mmdebstrap build, cached by content hash),
``initrd`` (the fast busybox initrd), ``repo`` (demo-app packages and the HTTP repo server),
``domain`` (domain XML, golden states, restore), ``agent`` (qemu-guest-agent calls), ``state``
(``lab.json`` / ``guests.toml``), ``keys`` (SSH keys).
"""

from providers.lab.errors import LabError
from providers.lab.lab import (
    down,
    health_ok,
    installed_version,
    publish,
    ssh_answers,
    ssh_client,
    ssh_run,
    status,
    up,
)
from providers.lab.state import LabGuest, LabState, load

__all__ = [
    "LabError",
    "LabGuest",
    "LabState",
    "down",
    "health_ok",
    "installed_version",
    "load",
    "publish",
    "ssh_answers",
    "ssh_client",
    "ssh_run",
    "status",
    "up",
]
