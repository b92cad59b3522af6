"""Vulnerability assessment of the fleet: what ``patchwave assess``, ``feeds`` and ``serve``'s scheduled
assessment do (the library under the CLI and the engine's assessment activities).

* :mod:`.guest` — reading one guest through its channel, read-only (shared with the dry run);
* :mod:`.vm` — :func:`~.vm.assess_vm`, THE one function that assesses one VM (scan, match the cached
  feeds, record), used by the CLI's thread pool and by the ``vm_assess_vulns`` batch activity alike;
* :mod:`.fleet` — the CLI path (a bounded thread pool over the selected VMs) and the round steps the
  engine runs per site and per batch (targets on record, slices by position);
* :mod:`.feeds` — loading feeds into the fact store's cache, refreshing the configured ones, their age;
* :mod:`.alerts` — ``vuln_found`` for a critical or known-exploited CVE new in the fleet (once per CVE);
* :mod:`.report` — the per-CVE and per-VM views (JSON that reads back);
* :mod:`.exposure` — what ``plan`` shows per VM: risk, the baseline's approved set, the CVEs it fixes.

A layer between the engine / dry run and :mod:`orchestrator.context` (``.importlinter``).
"""
