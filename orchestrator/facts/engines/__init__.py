"""The fact store's database engines: SQLite (embedded default, :mod:`.sqlite`) and PostgreSQL
(a store shared by a cluster's workers, :mod:`.postgres`).

Both run the same numbered migrations (:mod:`orchestrator.facts.schema`) and the same queries; the
few dialect differences are translated in one place, :mod:`.dialect`. An engine gives the store a
connection-like object per transaction (``execute``/``executemany`` returning a cursor with
``fetchone``/``fetchall``/``rowcount``/``lastrowid``, rows readable by name and by position).
"""
