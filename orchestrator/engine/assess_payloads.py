"""The values of the fleet assessment (``AssessFleet`` and its activities): one dataclass in, one out.

Like :mod:`orchestrator.engine.payloads` (frozen dataclasses of plain types, no secret), kept apart so
the run's payloads and the assessment's evolve independently. Every value here is of constant size:
the workflow names a round, a site and positions, and gets counts back; VM lists stay in the fact
store (``vuln_round_targets``), so no payload and no history grows with the fleet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ASSESS_WORKFLOW = "AssessFleet"


@dataclass(frozen=True)
class AssessRequest:
    """What starts (or continues) a fleet assessment. ``round_id`` "" = the workflow id."""

    round_id: str = ""
    refresh: bool = False  # refresh the guests' package lists first (apt-get update, dnf/zypper refresh)
    requested_by: str = ""
    # where a continued execution (continue-as-new) picks up, and what the earlier ones counted
    site_index: int = 0
    batch_index: int = 0
    assessed: int = 0
    failed: int = 0


@dataclass(frozen=True)
class RoundStart:
    round_id: str
    sites: tuple[str, ...]  # configured sites, in order
    batch_size: int  # VMs per batch activity (at most 500)
    batches_per_run: int = 100  # batch activities per execution before it continues as new


@dataclass(frozen=True)
class FeedsRefreshed:
    loaded: int = 0
    kept: int = 0
    failed: int = 0


@dataclass(frozen=True)
class SiteRound:
    round_id: str
    site: str


@dataclass(frozen=True)
class SiteTargets:
    targets: int  # the round's VMs on the site (not running ones included, marked failed)


@dataclass(frozen=True)
class AssessBatch:
    round_id: str
    site: str
    start: int  # position of the first target
    count: int  # at most AssessSettings.batch_size
    refresh: bool = False


@dataclass(frozen=True)
class BatchCounts:
    assessed: int = 0
    failed: int = 0
    skipped: int = 0  # done by an earlier attempt


@dataclass(frozen=True)
class RoundEnd:
    round_id: str


@dataclass(frozen=True)
class RoundSummary:
    round_id: str
    targets: int = 0
    assessed: int = 0
    failed: int = 0
    alerts: int = 0  # alerts pending delivery after this round (new ones included)
    notified: int = 0  # notices delivered


@dataclass(frozen=True)
class CveProofResult:
    """``vm_prove_cves``: one VM's proof after a ``run --cve`` patch, in counts (the proofs per CVE and
    package are in the fact store, ``cve_proofs``). ``still_open``: at most the run's CVEs x packages."""

    proved: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    still_open: tuple[str, ...] = ()
