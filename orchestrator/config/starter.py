"""The starter configuration ``patchwave init`` writes: one site, what it discovered, safe defaults.

Pure: :func:`provider_table` turns the command's connection options into a ``[providers.<site>]``
table (secrets as ``{ env = ... }`` / ``{ file = ... }`` references only — a secret value is never
written), :func:`render` turns that table and the site's inventory into commented TOML that
``patchwave plan`` accepts as it is (``operations.init_config`` validates it with the loader before
writing it). The choices, each explained in a comment of the file:

* every VM of the site is a target (``names = ["<site>/*"]``, ``exclude_tags = ["no-patch"]``);
* the first ``canary`` running VMs (by name) are the ``canary`` group: patched first, ad hoc, one at
  a time, then a soak and an approval gate before the ``main`` ring;
* the ``main`` ring waits for a weekly window (Sunday 02:00 for 4 h, in the machine's time zone);
* hypervisor hosts are reported on, never patched, until the operator opts in;
* a health check every VM gets (the guest answers through its channel), and per VM with a known
  address a suggested TCP check of its SSH port, commented out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.errors import ConfigError
from providers.base import Capability, Inventory, PowerState, VmInfo

KINDS = ("libvirt", "vsphere", "proxmox")
#: VMs listed one by one (suggested checks, the discovered list): beyond this, a count.
LISTED_MAX = 50


@dataclass(frozen=True, slots=True)
class Connection:
    """``patchwave init``'s connection options, as typed (no secret values: only where to find them)."""

    kind: str
    uri: str = ""
    host: str = ""
    port: int = 0
    user: str = ""
    password_env: str = ""
    password_file: str = ""
    token_name: str = ""
    token_env: str = ""
    token_file: str = ""
    ca_file: str = ""
    insecure: bool = False


def _refuse(field: str, problem: str, fix: str) -> ConfigError:
    return ConfigError("patchwave init", field, problem, fix)


def _secret_ref(name: str, env: str, file: str, *, required: bool) -> dict[str, str] | None:
    if env and file:
        raise _refuse(f"--{name}-env/--{name}-file", "give one of them, not both", f"remove --{name}-file")
    if env:
        return {"env": env}
    if file:
        return {"file": file}
    if required:
        raise _refuse(
            f"--{name}-env", f"no {name} given", f"pass --{name}-env VARIABLE (or --{name}-file PATH)"
        )
    return None


def provider_table(conn: Connection) -> dict[str, Any]:
    """The ``[providers.<site>]`` table for ``conn``; a missing or contradictory option is a ConfigError."""
    if conn.kind not in KINDS:
        raise _refuse("--provider", f"unknown provider {conn.kind!r}", f"use one of: {', '.join(KINDS)}")
    if conn.kind == "libvirt":
        if not conn.uri:
            raise _refuse("--uri", "the libvirt provider needs a URI", "pass --uri qemu:///system")
        return {"kind": "libvirt", "uri": conn.uri}
    if conn.uri:
        raise _refuse("--uri", f"is for libvirt, not {conn.kind}", "pass --host instead")
    if not conn.host or not conn.user:
        missing = "--host" if not conn.host else "--user"
        raise _refuse(missing, f"the {conn.kind} provider needs {missing}", f"pass {missing} ...")
    table: dict[str, Any] = {"kind": conn.kind, "host": conn.host, "user": conn.user}
    if conn.port:
        table["port"] = conn.port
    if conn.kind == "vsphere":
        if conn.token_name or conn.token_env or conn.token_file:
            raise _refuse("--token-name", "vSphere signs in with a password", "pass --password-env instead")
        table["password"] = _secret_ref("password", conn.password_env, conn.password_file, required=True)
        if conn.ca_file:
            table["ca_file"] = conn.ca_file
        table["insecure"] = conn.insecure
        return table
    password = _secret_ref("password", conn.password_env, conn.password_file, required=False)
    token = _secret_ref("token", conn.token_env, conn.token_file, required=False)
    if password is not None and (conn.token_name or token is not None):
        raise _refuse("--password-env", "give a password or an API token, not both", "remove one of them")
    if password is not None:
        table["password"] = password
    elif conn.token_name and token is not None:
        table["token_name"] = conn.token_name
        table["token_value"] = token
    else:
        raise _refuse(
            "--token-name",
            "Proxmox needs an API token (--token-name and --token-env) or a password (--password-env)",
            "pass --token-name patchwave --token-env PVE_TOKEN",
        )
    if conn.ca_file:
        table["ca_file"] = conn.ca_file
    table["verify_ssl"] = not conn.insecure
    return table


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string: JSON's escapes are TOML's


def canary_vms(inventory: Inventory, count: int) -> list[VmInfo]:
    """The first ``count`` running VMs by name (stopped ones only when too few run)."""
    by_name = sorted(inventory.vms, key=lambda vm: vm.ref.name)
    running = [vm for vm in by_name if vm.power is PowerState.RUNNING]
    rest = [vm for vm in by_name if vm.power is not PowerState.RUNNING]
    return (running + rest)[: max(count, 0)]


def _health_suggestions(site: str, vms: Sequence[VmInfo]) -> list[str]:
    lines: list[str] = []
    with_address = [vm for vm in vms if vm.ip_addresses][:LISTED_MAX]
    if not with_address:
        return [
            "# (no VM reported an IP address: once their guest agents run, `patchwave inventory` shows them)"
        ]
    for vm in with_address:
        lines += [
            "# [[health]]",
            f"# name = {_value(vm.ref.name + '-ssh')}",
            '# kind = "tcp"',
            '# address = "{ip}:22"                 # ' + f"{vm.ip_addresses[0]} when discovered",
            f"# match = {{ names = [{_value(f'{site}/{vm.ref.name}')}] }}",
            "#",
        ]
    if len([vm for vm in vms if vm.ip_addresses]) > LISTED_MAX:
        lines.append(f"# ... and more: only the first {LISTED_MAX} VMs with an address are listed")
    return lines


def render(
    *,
    site: str,
    table: Mapping[str, Any],
    inventory: Inventory,
    canary: int,
    channel: str,
    timezone: str,
    written_at: datetime,
    state_dir: str = "~/.local/state/patchwave",
) -> str:
    """The starter file's text (see the module docstring for what it chooses)."""
    canaries = canary_vms(inventory, canary)
    running = sum(vm.power is PowerState.RUNNING for vm in inventory.vms)
    lines = [
        f"# patchwave starter configuration, written by `patchwave init` on {written_at:%Y-%m-%d %H:%M %Z}",
        f"# from site {site!r} ({table['kind']}): {len(inventory.hosts)} host(s),"
        + f" {len(inventory.vms)} VM(s), {running} running.",
        "# Review it, then `patchwave -c THIS_FILE plan` shows what a run would do; every option with its",
        "# default: config/patchwave.example.toml. Secrets are references only ({ env = ... } / { file = ... }).",
        "",
        "[state]",
        f"dir = {_value(state_dir)}",
        "",
        "[temporal]",
        'mode = "embedded"                     # patchwave starts a local Temporal dev server itself',
        'address = "127.0.0.1:7233"',
        'namespace = "default"',
        'retention = "30d"',
        "",
        f"[providers.{site}]",
    ]
    lines += [f"{key} = {_value(value)}" for key, value in table.items()]
    lines += [
        "",
        "# Every VM of the site, except those tagged no-patch. A VM created later is a target too.",
        "[targets]",
        f"names = [{_value(f'{site}/*')}]",
        'exclude_tags = ["no-patch"]',
        "",
        "# The canary: patched first, alone, then a soak and `patchwave approve RUN --ring canary`.",
        "[[groups]]",
        'name = "canary"',
        'ring = "canary"',
        f"match = {{ names = [{', '.join(_value(f'{site}/{vm.ref.name}') for vm in canaries)}] }}",
        'window = ""                           # ad hoc: a run starts it at once',
        "[groups.policy]",
        "concurrency = 1",
        "",
        "# Everything else waits for the weekly window.",
        "[[groups]]",
        'name = "default"',
        'ring = "main"',
        'window = "weekly"',
        "",
        "[rings]",
        'order = ["canary", "main"]',
        "[rings.canary]",
        'soak = "30m"',
        "approval = true",
        "wave_size = 0",
        "[rings.main]",
        'soak = "0s"',
        "approval = false",
        "wave_size = 10",
        "",
        "[windows.weekly]",
        'cron = "0 2 * * SUN"                  # Sundays 02:00 ...',
        'duration = "4h"                       # ... for four hours',
        f"timezone = {_value(timezone)}",
        'cutoff = "30m"',
        "",
        "[policy]",
        "concurrency = 2",
        "failure_budget = 1                    # a second failed or rolled-back VM halts the run",
        'reboot = "if-required"',
        'snapshot_ttl = "72h"',
        'updates = "all"                       # or "security"',
        'health_deadline = "5m"',
        'patch_timeout = "1h"',
        "",
        "# Hypervisor hosts: reported on (pending updates, state), never patched, until you choose how:",
        '# patch = "api" or "ssh" (README: "Hypervisor hosts and windows").',
        "[hosts]",
        "enabled = true",
        'patch = "none"',
        "",
        "# How commands reach a guest: the hypervisor's guest agent where the platform offers it, else SSH",
        "# to the VM's address (its host key must be in known_hosts: no trust on first use).",
        "[guests]",
        f"channel = {_value(channel)}",
        'ssh = { user = "root", host = "{ip}", port = 22, trust_on_first_use = false }',
        "",
    ]
    if channel == "agent":
        for vm in sorted(inventory.vms, key=lambda vm: vm.ref.name):
            if Capability.GUEST_EXEC in vm.unsupported:
                lines += [
                    f"[guests.overrides.{_value(f'{site}/{vm.ref.name}')}]",
                    'channel = "ssh"                       # no guest agent channel in this VM',
                    "",
                ]
    lines += [
        "# Every VM: it is up and runs commands through its channel after the patch. Replace or add",
        "# checks of what the VM serves; suggestions from the discovered addresses follow.",
        "[[health]]",
        'name = "guest-responds"',
        'kind = "command"',
        'command = "uptime"',
        'timeout = "10s"',
        "retries = 3",
        'interval = "5s"',
        "",
    ]
    lines += _health_suggestions(site, sorted(inventory.vms, key=lambda vm: vm.ref.name))
    return "\n".join(lines) + "\n"
