"""What runs inside simulated guests (agent exec) and on simulated nodes (SSH).

Both go through :mod:`tests.simulators.pvesim.shell`. Guests have a small file system (``Guest.files``) that
snapshots capture and rollbacks restore. Tests script anything else per guest with
``Simulator.script_guest(vmid, match, exitcode=..., stdout=..., duration=...)``: the first script
whose ``match`` is a substring of the whole command line wins.
"""

from __future__ import annotations

import fnmatch

from tests.simulators.pvesim import actions
from tests.simulators.pvesim.shell import Outcome, Shell, common_program, run_script
from tests.simulators.pvesim.state import DEBIAN_OS_RELEASE, ApiError, Cluster, Guest


def run_guest(guest: Guest, argv: list[str], stdin: str | None) -> Outcome:
    """``argv`` as ``agent/exec`` runs it: exec'd without a shell (we emulate ``sh -c`` ourselves)."""
    line = " ".join(argv)
    for script in guest.scripts:
        if script["match"] in line:
            return Outcome(
                script.get("exitcode", 0),
                script.get("stdout", ""),
                script.get("stderr", ""),
                float(script.get("duration", 0.0)),
                script.get("signal"),
            )
    shell = Shell(lambda args, sh, data: _guest_program(guest, args, sh, data), guest.files)
    quoted = " ".join("'" + a.replace("'", "'\\''") + "'" for a in argv)
    return run_script(quoted, shell, stdin or "")


def _guest_program(guest: Guest, argv: list[str], shell: Shell, stdin: str) -> Outcome:
    common = common_program(argv, shell, stdin)
    if common is not None:
        return common
    name, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    match name:
        case "uname":
            return Outcome(0, "6.12.48+deb13-amd64\n" if "-r" in args else "Linux\n")
        case "hostname":
            return Outcome(0, guest.name + "\n")
    return Outcome(127, stderr=f"sh: 1: {argv[0]}: not found\n")


#: apt-get's "no action" switches: print what would be done (``Inst`` lines), change nothing.
SIMULATE = {"-s", "--simulate", "--just-print", "--dry-run", "--recon", "--no-act"}


def run_node(cl: Cluster, node: str, command: str) -> Outcome:
    files = {"/etc/os-release": DEBIAN_OS_RELEASE}
    return run_script(command, Shell(lambda args, sh, data: _node_program(cl, node, args, sh, data), files))


def _node_program(cl: Cluster, node: str, argv: list[str], shell: Shell, stdin: str) -> Outcome:
    name, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    try:
        if name == "ha-manager":
            return _ha_manager(cl, args)
        if name in ("apt-get", "apt"):
            return _apt(cl, node, args)
        if name == "reboot":
            actions.reboot_node(cl, node)
            return Outcome(0)
    except ApiError as exc:
        return Outcome(255, stderr=exc.message + "\n")
    common = common_program(argv, shell, stdin)
    if common is not None:
        return common
    if name == "uname":
        return Outcome(0, (cl.nodes[node].kernel_running if "-r" in args else "Linux") + "\n")
    if name == "hostname":
        return Outcome(0, node + "\n")
    if name == "ls":
        return _ls(cl.nodes[node].kernels_installed, shell, [a for a in args if not a.startswith("-")])
    return Outcome(127, stderr=f"sh: 1: {argv[0]}: not found\n")


def _ls(kernels: list[str], shell: Shell, patterns: list[str]) -> Outcome:
    """``ls -1d PATTERN...`` over the shell's files plus ``/boot/vmlinuz-<kernel>`` per installed kernel."""
    paths = sorted({*shell.files, *(f"/boot/vmlinuz-{k}" for k in kernels)})
    out, err = [], []
    for pattern in patterns:
        found = [p for p in paths if fnmatch.fnmatchcase(p, pattern)]
        out.extend(found)
        if not found:
            err.append(f"ls: cannot access '{pattern}': No such file or directory\n")
    return Outcome(2 if err else 0, "".join(f"{p}\n" for p in out), "".join(err))


def _ha_manager(cl: Cluster, args: list[str]) -> Outcome:
    if (
        args[:2] == ["crm-command", "node-maintenance"]
        and len(args) == 4
        and args[2] in ("enable", "disable")
    ):
        actions.ha_maintenance(cl, args[3], args[2] == "enable")
        return Outcome(0)
    if args[:1] == ["status"]:
        lines = [
            f"lrm {n.name} ({'maintenance mode' if n.ha_maintenance else 'active'})"
            for n in cl.nodes.values()
        ]
        return Outcome(0, "\n".join(lines) + "\n")
    return Outcome(255, stderr=f"ha-manager: unknown command '{' '.join(args)}'\n")


def _apt(cl: Cluster, node: str, args: list[str]) -> Outcome:
    words = [a for a in args if not a.startswith("-") and "::" not in a and "=" not in a]
    if not words:
        return Outcome(100, stderr="E: Invalid operation\n")
    if words[0] == "update":
        return Outcome(0, "Reading package lists... Done\n")
    if words[0] in ("dist-upgrade", "full-upgrade", "upgrade") and SIMULATE & set(args):
        rows = [
            f"Inst {p['Package']} [{p['OldVersion']}] ({p['Version']} Proxmox:9.1/trixie [amd64])"
            for p in actions.pending_updates(cl, node)
        ]
        summary = f"{len(rows)} upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n"
        return Outcome(0, "".join(r + "\n" for r in rows) + summary)
    if words[0] in ("dist-upgrade", "full-upgrade", "upgrade"):
        return Outcome(0, "\n".join(actions.apt_upgrade(cl, node)) + "\n")
    if words[0] == "list" and "--upgradable" in args:
        rows = [
            f"{p['Package']}/stable {p['Version']} amd64 [upgradable from: {p['OldVersion']}]"
            for p in actions.pending_updates(cl, node)
        ]
        return Outcome(0, "Listing...\n" + "".join(r + "\n" for r in rows))
    return Outcome(100, stderr=f"E: Invalid operation {words[0]}\n")
