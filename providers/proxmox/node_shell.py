"""SSH to a PVE node for what has no REST endpoint: ``ha-manager crm-command node-maintenance``.

The connection is :class:`providers.ssh.SshClient` (one connection per command), so the errors and
their codes are the same as for guests: ``host_key_unknown`` / ``host_key_mismatch``
(:class:`~providers.errors.HostKeyRejected`), ``auth``, ``unreachable``, ``timeout``. The host key is
always verified: against ``ssh.known_hosts`` when set, else the user's ``~/.ssh/known_hosts``; an
unknown key is refused (never trusted on first use, unlike proxmoxer's ``ssh_paramiko`` backend
which uses ``AutoAddPolicy``). Without ``ssh.key_file`` the login uses the operator's ssh-agent and
``~/.ssh/id_*`` keys, as ``ssh root@node`` would; with it, that key only.
"""

from __future__ import annotations

from providers.base import ExecResult
from providers.proxmox.settings import SshSettings
from providers.ssh import SshClient, SshTarget


class NodeShell:
    def __init__(self, ssh: SshSettings, host: str, *, connect_timeout: float) -> None:
        self.ssh = ssh
        self.host = host
        self.connect_timeout = connect_timeout

    @property
    def target(self) -> str:
        return f"ssh://{self.ssh.user}@{self.host}:{self.ssh.port}"

    def run(self, command: str, *, timeout: float) -> ExecResult:
        """Run ``command`` as given (no shell wrapping); a non-zero exit is in the result."""
        with SshClient(self._ssh_target()) as client:
            return client.exec(command, timeout=timeout)

    def _ssh_target(self) -> SshTarget:
        operator_identities = self.ssh.key_file is None
        return SshTarget(
            host=self.host,
            port=self.ssh.port,
            user=self.ssh.user,
            key_file=self.ssh.key_file,
            known_hosts=self.ssh.known_hosts,
            trust_on_first_use=False,
            connect_timeout=self.connect_timeout,
            allow_agent=operator_identities,
            look_for_keys=operator_identities,
        )
