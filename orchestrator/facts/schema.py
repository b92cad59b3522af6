"""The fact store's schema: an ordered list of migrations and the code that applies them.

One schema for both engines: the same numbered migrations run on SQLite and on PostgreSQL (their
few dialect differences — ``INTEGER PRIMARY KEY`` ids, ``INTEGER``/``REAL`` widths, placeholders —
are translated by :mod:`orchestrator.facts.engines.dialect`). Timestamps are ISO-8601 UTC text,
details JSON text. A migration is appended, never edited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.errors import FactStoreError

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE runs (
                run_id TEXT PRIMARY KEY, plan_id TEXT NOT NULL, plan_json TEXT NOT NULL,
                config_digest TEXT NOT NULL, requested_by TEXT NOT NULL, status TEXT NOT NULL,
                reason TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                schema_version INTEGER NOT NULL)""",
            """CREATE TABLE run_events (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), status TEXT NOT NULL,
                reason TEXT NOT NULL, recorded_at TEXT NOT NULL)""",
            """CREATE TABLE steps (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, action TEXT NOT NULL,
                phase TEXT NOT NULL, target TEXT NOT NULL, ok INTEGER, detail TEXT NOT NULL,
                error TEXT NOT NULL, recorded_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
            "CREATE INDEX steps_by_step ON steps (run_id, step_id)",
            """CREATE TABLE outcomes (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, kind TEXT NOT NULL,
                site TEXT NOT NULL, target_id TEXT NOT NULL, status TEXT NOT NULL, duration_s REAL,
                outcome TEXT NOT NULL, recorded_at TEXT NOT NULL)""",
            "CREATE INDEX outcomes_by_step ON outcomes (run_id, step_id)",
            "CREATE INDEX outcomes_by_target ON outcomes (step_id, status)",
            """CREATE TABLE snapshots (
                run_id TEXT NOT NULL, step_id TEXT NOT NULL, vm_site TEXT NOT NULL, vm_id TEXT NOT NULL,
                vm_name TEXT NOT NULL, name TEXT NOT NULL, snapshot_id TEXT NOT NULL, state TEXT NOT NULL,
                created_at TEXT NOT NULL, expires_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                PRIMARY KEY (run_id, step_id))""",
            """CREATE TABLE maintenance (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, host_site TEXT NOT NULL, host_id TEXT NOT NULL,
                host_name TEXT NOT NULL, state TEXT NOT NULL, recorded_at TEXT NOT NULL)""",
            "CREATE INDEX maintenance_by_host ON maintenance (host_site, host_id)",
        ),
    ),
    (
        2,
        (
            # What a guest had pending when it was assessed (before and after patching): the
            # compliance report's source. severities/packages are JSON text.
            """CREATE TABLE assessments (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, vm_site TEXT NOT NULL,
                vm_id TEXT NOT NULL, vm_name TEXT NOT NULL, phase TEXT NOT NULL, taken_at TEXT NOT NULL,
                os TEXT NOT NULL, kernel TEXT NOT NULL, pending INTEGER NOT NULL, security INTEGER NOT NULL,
                cves INTEGER NOT NULL, severities TEXT NOT NULL, reboot_required INTEGER NOT NULL,
                packages TEXT NOT NULL, recorded_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
            "CREATE INDEX assessments_by_vm ON assessments (vm_site, vm_id)",
        ),
    ),
    (
        3,
        (
            # Vulnerability feeds cached for offline assessment (orchestrator/facts/vulns.py): one row per
            # loaded feed, one per record (a compact JSON in the feed's own format), and an index of the
            # (ecosystem, package) names each record is about. Loading a feed again replaces its records.
            """CREATE TABLE vuln_feeds (
                id INTEGER PRIMARY KEY, kind TEXT NOT NULL, source TEXT NOT NULL, version TEXT NOT NULL,
                loaded_at TEXT NOT NULL, record_count INTEGER NOT NULL, current INTEGER NOT NULL,
                recorded_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
            "CREATE INDEX vuln_feeds_by_source ON vuln_feeds (kind, source)",
            """CREATE TABLE vuln_feed_records (
                id INTEGER PRIMARY KEY, feed_id INTEGER NOT NULL REFERENCES vuln_feeds(id),
                record_key TEXT NOT NULL, payload TEXT NOT NULL)""",
            "CREATE INDEX vuln_feed_records_by_feed ON vuln_feed_records (feed_id, record_key)",
            """CREATE TABLE vuln_feed_index (
                record_id INTEGER NOT NULL REFERENCES vuln_feed_records(id), ecosystem TEXT NOT NULL,
                package TEXT NOT NULL)""",
            "CREATE INDEX vuln_feed_index_by_package ON vuln_feed_index (package, ecosystem)",
            "CREATE INDEX vuln_feed_index_by_record ON vuln_feed_index (record_id)",
            # Per-VM vulnerability assessments: a header row per assessment and a row per finding.
            """CREATE TABLE vuln_assessments (
                id INTEGER PRIMARY KEY, vm_site TEXT NOT NULL, vm_id TEXT NOT NULL, vm_name TEXT NOT NULL,
                taken_at TEXT NOT NULL, os TEXT NOT NULL, feeds TEXT NOT NULL, findings INTEGER NOT NULL,
                kev INTEGER NOT NULL, unfixed INTEGER NOT NULL, severities TEXT NOT NULL,
                recorded_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
            "CREATE INDEX vuln_assessments_by_vm ON vuln_assessments (vm_site, vm_id)",
            """CREATE TABLE vuln_findings (
                id INTEGER PRIMARY KEY, assessment_id INTEGER NOT NULL REFERENCES vuln_assessments(id),
                cve TEXT NOT NULL, package TEXT NOT NULL, installed TEXT NOT NULL, fixed_version TEXT NOT NULL,
                severity TEXT NOT NULL, cvss_score REAL, kev INTEGER NOT NULL, kev_due TEXT NOT NULL,
                kev_ransomware INTEGER NOT NULL, fix_available INTEGER NOT NULL, sources TEXT NOT NULL,
                published TEXT NOT NULL, days_since_release INTEGER, source_package TEXT NOT NULL,
                note TEXT NOT NULL)""",
            "CREATE INDEX vuln_findings_by_assessment ON vuln_findings (assessment_id)",
            "CREATE INDEX vuln_findings_by_cve ON vuln_findings (cve)",
        ),
    ),
    (
        4,
        (
            # The typed step journal: step rows from here on are journal version 2 (package changes
            # as {name, old, new}, see orchestrator.facts.actions), which an older patchwave would
            # misread; knowing fewer migrations, it refuses the file instead. Journal readers
            # select by (run, step, action).
            "CREATE INDEX steps_by_action ON steps (run_id, step_id, action)",
        ),
    ),
    (
        5,
        (
            # The latest inventory per site (orchestrator/facts/inventory.py): a header row per discovery,
            # machine rows (hosts and VMs) only for each site's current one, so the report can show the
            # whole fleet (never-assessed machines too) without a live provider connection.
            """CREATE TABLE inventory_snapshots (
                id INTEGER PRIMARY KEY, site TEXT NOT NULL, taken_at TEXT NOT NULL, hosts INTEGER NOT NULL,
                vms INTEGER NOT NULL, current INTEGER NOT NULL, recorded_at TEXT NOT NULL,
                schema_version INTEGER NOT NULL)""",
            "CREATE INDEX inventory_snapshots_by_site ON inventory_snapshots (site, current)",
            """CREATE TABLE inventory_machines (
                snapshot_id INTEGER NOT NULL REFERENCES inventory_snapshots(id), kind TEXT NOT NULL,
                site TEXT NOT NULL, machine_id TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
                host_id TEXT NOT NULL, group_name TEXT NOT NULL, ring TEXT NOT NULL, os TEXT NOT NULL,
                version TEXT NOT NULL, build TEXT NOT NULL, boot_time TEXT NOT NULL)""",
            "CREATE INDEX inventory_machines_by_snapshot ON inventory_machines (snapshot_id, kind)",
            # Fleet-wide reads (metrics at scrape time, the report's trend) seek per machine and by time.
            "CREATE INDEX snapshots_by_state ON snapshots (state, created_at)",
            "CREATE INDEX assessments_by_vm_time ON assessments (vm_site, vm_id, taken_at)",
            "CREATE INDEX assessments_by_time ON assessments (taken_at)",
            "CREATE INDEX outcomes_by_status_time ON outcomes (status, kind, recorded_at)",
            "CREATE INDEX outcomes_by_site ON outcomes (site, kind, target_id)",
        ),
    ),
    (
        6,
        (
            # Backups a run took (orchestrator/facts/backups.py): one row per (run, step), its state
            # (intent -> created | failed; created -> deleted) and the latest verification's verdict;
            # every restore-verify attempt is appended to backup_verifications (probes as JSON).
            """CREATE TABLE backups (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, vm_site TEXT NOT NULL,
                vm_id TEXT NOT NULL, vm_name TEXT NOT NULL, target TEXT NOT NULL, backup_id TEXT NOT NULL,
                location TEXT NOT NULL, size INTEGER NOT NULL, checksum TEXT NOT NULL, state TEXT NOT NULL,
                error TEXT NOT NULL, created_at TEXT NOT NULL, verified_at TEXT NOT NULL,
                verified_how TEXT NOT NULL, verify_result TEXT NOT NULL, recorded_at TEXT NOT NULL,
                updated_at TEXT NOT NULL, schema_version INTEGER NOT NULL, UNIQUE (run_id, step_id))""",
            "CREATE INDEX backups_by_vm ON backups (vm_site, vm_id)",
            "CREATE INDEX backups_by_platform_id ON backups (vm_site, backup_id)",
            """CREATE TABLE backup_verifications (
                id INTEGER PRIMARY KEY, backup_row INTEGER NOT NULL REFERENCES backups(id),
                run_id TEXT NOT NULL, step_id TEXT NOT NULL, copy_id TEXT NOT NULL, started_at TEXT NOT NULL,
                finished_at TEXT NOT NULL, how TEXT NOT NULL, result TEXT NOT NULL, boot_s REAL,
                probes TEXT NOT NULL, error TEXT NOT NULL, recorded_at TEXT NOT NULL,
                schema_version INTEGER NOT NULL)""",
            "CREATE INDEX backup_verifications_by_backup ON backup_verifications (backup_row)",
        ),
    ),
    (
        7,
        (
            # Plans in bounded rows (orchestrator/facts/plans.py): runs.plan_json keeps the plan's header
            # (no steps, no blockers); waves, VM steps, host steps and blockers/warnings are one row each,
            # so a run of 50,000 VMs is read in slices by the workflows, never as one document.
            """CREATE TABLE plan_waves (
                run_id TEXT NOT NULL, position INTEGER NOT NULL, wave_id TEXT NOT NULL, ring TEXT NOT NULL,
                size INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (run_id, position))""",
            """CREATE TABLE plan_steps (
                run_id TEXT NOT NULL, wave_position INTEGER NOT NULL, position INTEGER NOT NULL,
                step_id TEXT NOT NULL, ring TEXT NOT NULL, group_name TEXT NOT NULL, vm_site TEXT NOT NULL,
                vm_id TEXT NOT NULL, vm_name TEXT NOT NULL, body TEXT NOT NULL,
                PRIMARY KEY (run_id, wave_position, position))""",
            "CREATE INDEX plan_steps_by_step ON plan_steps (run_id, step_id)",
            """CREATE TABLE plan_hosts (
                run_id TEXT NOT NULL, position INTEGER NOT NULL, domain_id TEXT NOT NULL, step_id TEXT NOT NULL,
                body TEXT NOT NULL, PRIMARY KEY (run_id, position))""",
            """CREATE TABLE plan_notes (
                run_id TEXT NOT NULL, kind TEXT NOT NULL, position INTEGER NOT NULL, target TEXT NOT NULL,
                code TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (run_id, kind, position))""",
            # A discovery's full machine descriptions (the planner's input), and the snapshots a run
            # discovered but has not planned yet (their machine rows outlive a newer discovery).
            "ALTER TABLE inventory_machines ADD COLUMN body TEXT NOT NULL DEFAULT ''",
            """CREATE TABLE inventory_pins (
                snapshot_id INTEGER NOT NULL, run_id TEXT NOT NULL, pinned_at TEXT NOT NULL,
                PRIMARY KEY (snapshot_id, run_id))""",
        ),
    ),
    (
        8,
        (
            # What `patchwave autoupdates apply|status` and the runs' pause/restore did to each VM's
            # automatic updater (orchestrator/facts/autoupdates.py): append-only; an apply records its
            # intent (the planned files by hash, units, holds) before it changes the guest and the result
            # after; status records let the compliance report show drift without asking the guests.
            """CREATE TABLE autoupdate_records (
                id INTEGER PRIMARY KEY, operation TEXT NOT NULL, vm_site TEXT NOT NULL, vm_id TEXT NOT NULL,
                vm_name TEXT NOT NULL, action TEXT NOT NULL, mode TEXT NOT NULL, run_id TEXT NOT NULL,
                step_id TEXT NOT NULL, ok INTEGER, detail TEXT NOT NULL, recorded_at TEXT NOT NULL,
                schema_version INTEGER NOT NULL)""",
            "CREATE INDEX autoupdate_records_by_vm ON autoupdate_records (vm_site, vm_id, action)",
        ),
    ),
    (
        9,
        (
            # Leases (orchestrator/facts/leases.py): which run or operation works on a VM or host
            # now. One row per leased target (never a row that grows with the fleet); taken before
            # the first side effect, renewed while the holder lives, deleted when released.
            """CREATE TABLE leases (
                kind TEXT NOT NULL, site TEXT NOT NULL, target_id TEXT NOT NULL, name TEXT NOT NULL,
                owner TEXT NOT NULL, operation TEXT NOT NULL, holder TEXT NOT NULL,
                acquired_at TEXT NOT NULL, renewed_at TEXT NOT NULL, expires_at TEXT NOT NULL,
                PRIMARY KEY (kind, site, target_id))""",
            "CREATE INDEX leases_by_owner ON leases (owner)",
            "CREATE INDEX leases_by_expiry ON leases (expires_at)",
        ),
    ),
    (
        10,
        (
            # Fleet vulnerability assessments (orchestrator/assessment, facts/vulns.py, facts/vuln_rounds.py).
            # Each assessment also keeps the VM's pending updates (JSON, capped; only on the latest few per
            # VM), its OS family, how many packages it has, its risk (of the findings a patch can fix) and
            # the round it belongs to.
            "ALTER TABLE vuln_assessments ADD COLUMN round_id TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE vuln_assessments ADD COLUMN family TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE vuln_assessments ADD COLUMN packages INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE vuln_assessments ADD COLUMN pending TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE vuln_assessments ADD COLUMN risk_kev INTEGER NOT NULL DEFAULT 0",
            "ALTER TABLE vuln_assessments ADD COLUMN risk_severity TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE vuln_assessments ADD COLUMN risk_cvss REAL",
            "ALTER TABLE vuln_assessments ADD COLUMN risk_fixable INTEGER NOT NULL DEFAULT 0",
            "CREATE INDEX vuln_assessments_by_round ON vuln_assessments (round_id)",
            # A round: one CLI `assess` or one scheduled fleet assessment. Its targets are written once per
            # site (in discovery order) and taken in slices by the batch activities, which mark each one.
            """CREATE TABLE vuln_rounds (
                id TEXT PRIMARY KEY, requested_by TEXT NOT NULL, started_at TEXT NOT NULL,
                finished_at TEXT NOT NULL, targets INTEGER NOT NULL, assessed INTEGER NOT NULL,
                failed INTEGER NOT NULL, alerts INTEGER NOT NULL, recorded_at TEXT NOT NULL,
                schema_version INTEGER NOT NULL)""",
            """CREATE TABLE vuln_round_targets (
                round_id TEXT NOT NULL, site TEXT NOT NULL, position INTEGER NOT NULL, vm_id TEXT NOT NULL,
                vm_name TEXT NOT NULL, address TEXT NOT NULL, state TEXT NOT NULL, note TEXT NOT NULL,
                assessment_id INTEGER, PRIMARY KEY (round_id, site, position))""",
            # Critical / known-exploited CVEs as they first appeared in the fleet, and whether vuln_found
            # was delivered for them (never twice for one CVE).
            """CREATE TABLE vuln_alerts (
                cve TEXT PRIMARY KEY, severity TEXT NOT NULL, kev INTEGER NOT NULL, machines INTEGER NOT NULL,
                first_seen TEXT NOT NULL, round_id TEXT NOT NULL, notified_at TEXT NOT NULL)""",
            # When patchwave first saw each candidate version pending anywhere (an update's age where no
            # advisory dates it: baselines' approve_after).
            """CREATE TABLE vuln_candidates (
                family TEXT NOT NULL, package TEXT NOT NULL, version TEXT NOT NULL, first_seen TEXT NOT NULL,
                PRIMARY KEY (family, package, version))""",
        ),
    ),
    (
        11,
        (
            # The services a guest still runs with replaced libraries at an assessment (needrestart -b,
            # needs-restarting -s, zypper ps -s; "kernel" for a newer kernel): a JSON list, the report's
            # "services running old libraries". Rows from before read as none found.
            "ALTER TABLE assessments ADD COLUMN restart_needed TEXT NOT NULL DEFAULT '[]'",
        ),
    ),
    (
        12,
        (
            # Pinned promotion (orchestrator/facts/pins.py): what each first-ring VM installed (one row
            # per step, replaced when the step patches again), the run's pin set frozen from the
            # patched-and-healthy ones when the first later-ring VM needs it, and what later rings held back.
            """CREATE TABLE pin_tested (
                run_id TEXT NOT NULL, step_id TEXT NOT NULL, ring TEXT NOT NULL, os_key TEXT NOT NULL,
                packages TEXT NOT NULL, recorded_at TEXT NOT NULL, PRIMARY KEY (run_id, step_id))""",
            """CREATE TABLE pin_sets (
                run_id TEXT PRIMARY KEY, pin_set_id TEXT NOT NULL, ring TEXT NOT NULL, contributors INTEGER NOT NULL,
                excluded INTEGER NOT NULL, frozen_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
            """CREATE TABLE pin_entries (
                run_id TEXT NOT NULL, os_key TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL,
                tested_on INTEGER NOT NULL, PRIMARY KEY (run_id, os_key, name))""",
            """CREATE TABLE pin_held (
                run_id TEXT NOT NULL, step_id TEXT NOT NULL, vm_name TEXT NOT NULL, os_key TEXT NOT NULL,
                name TEXT NOT NULL, current_version TEXT NOT NULL, candidate TEXT NOT NULL, pinned TEXT NOT NULL,
                reason TEXT NOT NULL, recorded_at TEXT NOT NULL, PRIMARY KEY (run_id, step_id, name))""",
        ),
    ),
    (
        13,
        (
            # `run --cve`: the CVEs a run patches and whether it overrode windows (one row per run) ...
            """CREATE TABLE cve_runs (
                run_id TEXT PRIMARY KEY, cves TEXT NOT NULL, now_override INTEGER NOT NULL,
                created_at TEXT NOT NULL)""",
            # ... its target set: one row per (VM, CVE, package) to upgrade to at least fixed_version
            # (what vm_patch installs, read by reference: never carried in a payload) ...
            """CREATE TABLE cve_targets (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, vm_site TEXT NOT NULL,
                vm_id TEXT NOT NULL, vm_name TEXT NOT NULL, cve TEXT NOT NULL, package TEXT NOT NULL,
                installed TEXT NOT NULL, fixed_version TEXT NOT NULL, severity TEXT NOT NULL,
                kev INTEGER NOT NULL, published TEXT NOT NULL, assessed_at TEXT NOT NULL)""",
            "CREATE INDEX cve_targets_by_step ON cve_targets (run_id, step_id)",
            # ... and the proof per (VM, CVE, package) after the patch (the latest per key counts).
            """CREATE TABLE cve_proofs (
                id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, step_id TEXT NOT NULL, vm_site TEXT NOT NULL,
                vm_id TEXT NOT NULL, vm_name TEXT NOT NULL, cve TEXT NOT NULL, package TEXT NOT NULL,
                verdict TEXT NOT NULL, installed TEXT NOT NULL, fixed_version TEXT NOT NULL,
                evidence TEXT NOT NULL, proved_at TEXT NOT NULL, schema_version INTEGER NOT NULL)""",
            "CREATE INDEX cve_proofs_by_step ON cve_proofs (run_id, step_id)",
        ),
    ),
    (
        14,
        (
            # Ring gates (orchestrator/facts/gates.py), append-only: a gate's refusal (the run halted),
            # an operator's approval, a forced approval past a refusal — with who decided and when. A
            # few rows per run (one per decision at a ring gate), never per VM.
            """CREATE TABLE ring_gates (
                id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ring TEXT NOT NULL,
                decision TEXT NOT NULL, decided_by TEXT NOT NULL, reason TEXT NOT NULL,
                decided_at TEXT NOT NULL)""",
            "CREATE INDEX ring_gates_by_run ON ring_gates (run_id)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]


def current_version(db: Any) -> int:
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)"
    )
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(db: Any, *, where: str | Path, upto: int = LATEST_VERSION) -> int:
    """Apply the migrations newer than the database's version, up to ``upto`` (inside the caller's
    transaction; ``db`` is a connection of either engine, ``where`` the store as messages name it)."""
    version = current_version(db)
    if version > LATEST_VERSION:
        raise FactStoreError(
            f"{where} has schema version {version}; this patchwave knows up to {LATEST_VERSION}",
            step="facts",
            fix="upgrade patchwave, or point [state] dir (or [facts] url) elsewhere",
        )
    for number, statements in MIGRATIONS:
        if number <= version or number > upto:
            continue
        for statement in statements:
            db.execute(statement)
        db.execute(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, CURRENT_TIMESTAMP)", (number,)
        )
        version = number
    return version
