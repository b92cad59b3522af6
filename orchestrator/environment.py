"""The environment of every child process patchwave starts: an allow-list, never the whole of ours.

patchwave's own environment holds secrets given by reference (``password = { env = "..." }``, a
notification URL in ``PATCHWAVE_NOTIFY_URL``) and whatever else the operator's shell exported. A
child that inherited it would keep those values readable in ``/proc/<pid>/environ`` for its whole
life (the embedded Temporal server lives as long as the command). So every child — the Temporal dev
server, a guest command of the ``local`` channel (chroot), the lab's image build, repository server
and host tools — gets :func:`child_environment`: the names below taken from ours, plus what that one
child needs, passed explicitly (``extra``). SSH is paramiko inside this process: no ssh child.

The allow-list, and why each name is on it (none of them is a credential):

* ``PATH`` — children find their programs (``chroot``, ``mmdebstrap``, ``qemu-img``, ``dpkg-deb``);
* ``LANG``, ``LANGUAGE``, ``LC_*`` — the locale tools print and parse text in (the lab reads their output);
* ``TZ`` — the time zone of the times children print in their logs;
* ``HOME`` — where tools look for their own configuration (Go and Python resolve ``~`` from it);
* ``TMPDIR`` — where children put temporary files (tests point it at a private directory).

Proxy variables are not on it (a proxy URL may embed a password): the lab's image build, which
downloads packages, passes them on explicitly.

A library that starts a helper process by itself, with our whole environment, is imported under
:func:`allow_listed_environ`: croniter 7 runs ``file -b <python>`` (``platform.architecture()``)
when it is imported (``orchestrator.windows.rules``, the one place that imports it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

ALLOWED = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR"})
ALLOWED_PREFIXES = ("LC_",)


def allowed(name: str) -> bool:
    return name in ALLOWED or name.startswith(ALLOWED_PREFIXES)


def child_environment(
    extra: Mapping[str, str] | None = None, *, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The allow-listed variables of ``environ`` (default: this process's), then ``extra`` on top.

    ``environ={}`` starts from nothing: the guest channels pass their fixed guest environment as
    ``extra`` so that a guest command never depends on the orchestrator's shell."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if allowed(name)}
    env.update(extra or {})
    return env


@contextmanager
def allow_listed_environ() -> Iterator[None]:
    """``os.environ`` holds only the allow-list while the body runs, then everything again.

    For importing a library that starts a helper process as it is imported. Module imports run in
    the main thread before patchwave starts any thread of its own, so nothing else reads or
    writes ``os.environ`` meanwhile."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(child_environment(environ=saved))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
