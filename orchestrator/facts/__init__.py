"""The fact store: what patchwave did, on record (``store.FactStore`` over runs, the step journal
(``actions``, ``details``, ``journal``), the snapshot and maintenance registry, assessments)."""
