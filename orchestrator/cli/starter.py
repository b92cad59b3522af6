"""``patchwave init``: connect to one site, discover it, write a starter configuration ``plan`` accepts."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator import operations
from orchestrator.cli.options import opts_of
from orchestrator.config.starter import Connection


def init(
    ctx: typer.Context,
    provider: Annotated[str, typer.Option("--provider", help="libvirt | vsphere | proxmox")],
    site: Annotated[
        str, typer.Option(help="The site's name ([providers.<site>]); default: the provider's.")
    ] = "",
    uri: Annotated[str, typer.Option(help="libvirt: the connection URI, e.g. qemu:///system.")] = "",
    host: Annotated[str, typer.Option(help="vsphere/proxmox: vCenter or a cluster node (name or IP).")] = "",
    port: Annotated[int, typer.Option(help="vsphere/proxmox: API port (default 443 / 8006).", min=0)] = 0,
    user: Annotated[str, typer.Option(help="vsphere/proxmox: API user, e.g. patchwave@pve.")] = "",
    password_env: Annotated[str, typer.Option(help="Environment variable holding the password.")] = "",
    password_file: Annotated[str, typer.Option(help="File holding only the password (mode 0600).")] = "",
    token_name: Annotated[str, typer.Option(help="proxmox: API token id (without user@realm!).")] = "",
    token_env: Annotated[str, typer.Option(help="proxmox: environment variable holding the token.")] = "",
    token_file: Annotated[str, typer.Option(help="proxmox: file holding only the token.")] = "",
    ca_file: Annotated[str, typer.Option(help="CA bundle to verify the API's TLS certificate.")] = "",
    insecure: Annotated[
        bool, typer.Option(help="Do not verify TLS at all (written to the file as such).")
    ] = False,
    canary: Annotated[int, typer.Option(help="How many VMs form the canary group.", min=0)] = 2,
    force: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
) -> None:
    """Connect to a site, discover it and write a commented starter configuration (-c, default
    patchwave.toml): secrets by reference, a canary group, a weekly window, health checks."""
    connection = Connection(
        kind=provider, uri=uri, host=host, port=port, user=user, password_env=password_env,
        password_file=password_file, token_name=token_name, token_env=token_env, token_file=token_file,
        ca_file=ca_file, insecure=insecure,
    )  # fmt: skip
    made = operations.init_config(
        opts_of(ctx).config, connection, site=site or provider, canary=canary, force=force
    )
    inv = made.inventory
    typer.echo(
        f"wrote {made.path}: site {inv.site!r}, {len(inv.hosts)} host(s), {len(inv.vms)} VM(s); "
        f"canary: {', '.join(made.canaries) or '(none)'}"
    )
    typer.echo(f"next: patchwave -c {made.path} plan")
