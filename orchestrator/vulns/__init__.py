"""Vulnerability intelligence: advisory feeds, version ordering and per-machine findings.

Pure values and parsers (no connection, no fact store) except :mod:`.loading`, which reads the files,
archives and URLs the operator names. The fact-store cache of feeds and findings is
:mod:`orchestrator.facts.vulns`; where to download each feed is ``FEEDS.md`` in this folder.

* :mod:`.versions` — dpkg and rpm ordering; :mod:`.severity` — CVSS scores and distribution ratings
* :mod:`.osv`, :mod:`.debian_tracker`, :mod:`.kev` — the feeds' formats; :mod:`.ecosystems` — a guest's names
* :mod:`.feeds` / :mod:`.loading` — loaded feeds as values; :mod:`.findings` — one machine's findings
"""
