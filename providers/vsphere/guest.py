"""Guest exec through VMware Tools guest operations (GuestOperationsManager).

A command runs as ``/bin/sh -c '<argv> >OUT 2>ERR [<IN]'`` via ``StartProgramInGuest``; completion
is polled with ``ListProcessesInGuest``; the output files are fetched with
``InitiateFileTransferFromGuest`` (an HTTPS GET to the URL vCenter hands out) and deleted. Linux/Unix
guests only (``/bin/sh``). Needs ``guest_user``/``guest_password``; without them the provider does not
declare ``Capability.GUEST_EXEC``.

vcsim 0.24 does not implement the guest process manager, so this module is exercised against vcsim
only up to the refusal (``CapabilityMissing``); the happy path needs a real vSphere lab.
"""

from __future__ import annotations

import shlex
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from pyVmomi import vim

from providers.base import ExecResult
from providers.errors import ProviderError, ProviderTimeout
from providers.timing import poll_delays
from providers.vsphere.inventory import read_one
from providers.vsphere.session import Session, tls_context

log = structlog.get_logger("patchwave.providers.vsphere")
OUTPUT_CAP = 1024 * 1024  # bytes kept per stream
POLL_S = 1.0  # the longest pause between ListProcessesInGuest polls (they start at FIRST_POLL_S)


class GuestOperations:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _auth(self) -> Any:
        s = self.session.settings
        assert s.guest_password is not None
        return vim.vm.guest.NamePasswordAuthentication(
            username=s.guest_user, password=s.guest_password.reveal(), interactiveSession=False
        )

    def ping(self, vm: Any, *, target: str) -> bool:
        props = read_one(
            self.session, vm, ["guest.toolsRunningStatus", "guest.guestOperationsReady"], target=target
        )
        return props.get("guest.toolsRunningStatus") == "guestToolsRunning" and bool(
            props.get("guest.guestOperationsReady")
        )

    def run(
        self,
        vm: Any,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None,
        stdin: str | None,
        target: str,
    ) -> ExecResult:
        clock = self.session.clock
        started = clock.monotonic()
        manager = self.session.content.guestOperationsManager
        files, processes, auth = manager.fileManager, manager.processManager, self._auth()
        call = self.session.call

        def temp(suffix: str) -> str:
            created: str = call(
                lambda c: files.CreateTemporaryFileInGuest(vm, auth, "pw-", suffix), target=target
            )
            return created

        out, err = temp(".out"), temp(".err")
        cleanup = [out, err]
        try:
            command = f"{shlex.join(argv)} >{shlex.quote(out)} 2>{shlex.quote(err)}"
            if stdin is not None:
                source = temp(".in")
                cleanup.append(source)
                self._upload(vm, auth, source, stdin.encode(), target)
                command += f" <{shlex.quote(source)}"
            spec = vim.vm.guest.ProcessManager.ProgramSpec(
                programPath="/bin/sh",
                arguments="-c " + shlex.quote(command),
                envVariables=[f"{k}={v}" for k, v in (env or {}).items()],
            )
            pid = call(lambda c: processes.StartProgramInGuest(vm, auth, spec), target=target)
            exit_code = self._wait(vm, auth, pid, started + timeout, target)
            stdout, out_cut = self._download(vm, auth, out, target)
            stderr, err_cut = self._download(vm, auth, err, target)
        finally:
            for path in cleanup:
                try:
                    call(
                        lambda c, p=path: files.DeleteFileInGuest(vm, auth, p),  # type: ignore[misc]  # lambda binding a loop variable: python/mypy#15459
                        target=target,
                    )
                except ProviderError as exc:  # a leftover temp file is not worth failing for
                    log.debug("guest_temp_file_left", target=target, path=path, error=exc.code)
        return ExecResult(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            duration_s=clock.monotonic() - started,
        )

    def _wait(self, vm: Any, auth: Any, pid: int, deadline: float, target: str) -> int | None:
        clock = self.session.clock
        processes = self.session.content.guestOperationsManager.processManager
        delays = poll_delays(POLL_S)
        while True:
            info = self.session.call(lambda c: processes.ListProcessesInGuest(vm, auth, [pid]), target=target)
            if info and info[0].endTime is not None:
                exit_code: int | None = info[0].exitCode
                return exit_code
            if clock.monotonic() >= deadline:
                try:
                    self.session.call(
                        lambda c: processes.TerminateProcessInGuest(vm, auth, pid), target=target
                    )
                except ProviderError:
                    pass  # the timeout is what the caller needs to hear about
                raise ProviderTimeout(
                    f"guest command (pid {pid}) still running at the deadline", target=target
                )
            clock.sleep(next(delays))

    def _url(self, url: str) -> str:
        """vCenter may answer with host ``*``: it means "the host you are talking to"."""
        parts = urllib.parse.urlsplit(url)
        if parts.hostname == "*":
            netloc = f"{self.session.settings.host}:{self.session.settings.port}"
            return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        return url

    def _upload(self, vm: Any, auth: Any, path: str, data: bytes, target: str) -> None:
        files = self.session.content.guestOperationsManager.fileManager
        attributes = vim.vm.guest.FileManager.FileAttributes()
        url = self.session.call(
            lambda c: files.InitiateFileTransferToGuest(vm, auth, path, attributes, len(data), True),
            target=target,
        )
        request = urllib.request.Request(self._url(url), data=data, method="PUT")
        with urllib.request.urlopen(request, context=tls_context(self.session.settings), timeout=60):
            pass

    def _download(self, vm: Any, auth: Any, path: str, target: str) -> tuple[str, bool]:
        files = self.session.content.guestOperationsManager.fileManager
        info = self.session.call(lambda c: files.InitiateFileTransferFromGuest(vm, auth, path), target=target)
        with urllib.request.urlopen(
            self._url(info.url), context=tls_context(self.session.settings), timeout=60
        ) as resp:
            data = resp.read(OUTPUT_CAP + 1)
        return data[:OUTPUT_CAP].decode("utf-8", "replace"), len(data) > OUTPUT_CAP
