"""The PATH every command in a guest runs with, whichever channel carries it.

SSH (``orchestrator.guests.ssh``), the guest agents (libvirt's qemu-ga ``guest-exec`` and Proxmox's
``agent/exec`` *replace* the process environment, so PATH is always sent) and the lab's guests all
use this one value. It names the distribution's directories only, sbin before bin (as root's own
PATH does), and it finds everything patchwave runs on every guest family it patches:

* Debian 12 / Ubuntu (merged /usr): apt-get, dpkg, dpkg-query in /usr/bin, needrestart in /usr/sbin;
* RHEL 8/9, Alma, Rocky, Fedora (merged /usr): dnf, rpm, needs-restarting in /usr/bin;
* SUSE (SLES/Leap 15, /usr not merged on every release): zypper and rpm in /usr/bin, some of the
  base tools still in /sbin and /bin;
* everywhere: sh, uname, sed, awk, systemctl, reboot in /usr/bin, /usr/sbin, /bin or /sbin.

``/usr/local/*`` is left out on purpose: patching runs as root, and a command name must mean the
distribution's program on every guest, not a local wrapper or build that happens to shadow it.
"""

from __future__ import annotations

GUEST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
