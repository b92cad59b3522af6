"""SSH to a PVE node for what has no REST endpoint: ``ha-manager crm-command node-maintenance``.

The host key is always verified: against ``ssh.known_hosts`` when set, else the user's
``~/.ssh/known_hosts``; an unknown key is refused (never auto-added, unlike proxmoxer's
``ssh_paramiko`` backend which uses ``AutoAddPolicy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers.base import (
    AuthenticationFailed,
    PermanentProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.proxmox_settings import SshSettings


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str


class UnknownHostKey(PermanentProviderError):
    pass


class NodeShell:
    def __init__(self, ssh: SshSettings, host: str, *, connect_timeout: float) -> None:
        self.ssh = ssh
        self.host = host
        self.connect_timeout = connect_timeout

    @property
    def target(self) -> str:
        return f"ssh://{self.ssh.user}@{self.host}:{self.ssh.port}"

    def run(self, command: str, *, timeout: float) -> CommandResult:
        import paramiko

        client = paramiko.SSHClient()
        if self.ssh.known_hosts:
            client.load_host_keys(str(self.ssh.known_hosts))
        else:
            client.load_system_host_keys()
        client.set_missing_host_key_policy(_reject_policy(paramiko, self.target))
        try:
            self._connect(client, paramiko)
            _stdin, stdout, stderr = client.exec_command(command, timeout=timeout)
            out = stdout.read().decode("utf-8", "replace")
            err = stderr.read().decode("utf-8", "replace")
            return CommandResult(stdout.channel.recv_exit_status(), out, err)
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"SSH command timed out after {timeout:.0f}s: {command}", target=self.target
            ) from exc
        finally:
            client.close()

    def _connect(self, client: Any, paramiko: Any) -> None:
        key_file = str(self.ssh.key_file) if self.ssh.key_file else None
        try:
            client.connect(
                self.host,
                port=self.ssh.port,
                username=self.ssh.user,
                key_filename=key_file,
                allow_agent=key_file is None,
                look_for_keys=key_file is None,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except paramiko.BadHostKeyException as exc:
            raise PermanentProviderError(
                f"the SSH host key of {self.host} does not match known_hosts (possible MITM): {exc}",
                target=self.target,
                code="ssh_host_key",
            ) from exc
        except paramiko.AuthenticationException as exc:
            raise AuthenticationFailed(
                f"SSH authentication as {self.ssh.user} failed: {exc}", target=self.target, code="ssh_auth"
            ) from exc
        except (paramiko.ssh_exception.NoValidConnectionsError, OSError) as exc:
            raise ProviderUnavailable(f"cannot reach {self.target}: {exc}", target=self.target) from exc


def _reject_policy(paramiko: Any, target: str) -> Any:
    class _Reject(paramiko.MissingHostKeyPolicy):  # type: ignore[misc,name-defined]
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise UnknownHostKey(
                f"SSH host key of {hostname} ({key.get_name()}) is not in known_hosts",
                target=target,
                code="ssh_host_key",
            )

    return _Reject()
