"""The one error of the vulnerability library: a feed that cannot be read, and what to get instead."""

from __future__ import annotations

from orchestrator.errors import OrchestratorError

#: Where each feed is downloaded (FEEDS.md says how often).
DOWNLOADS = (
    "OSV: https://osv-vulnerabilities.storage.googleapis.com/<Ecosystem>/all.zip (Debian, Ubuntu, AlmaLinux, ...)",
    "Debian Security Tracker: https://security-tracker.debian.org/tracker/data/json",
    "CISA KEV: https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json",
)


class FeedError(OrchestratorError):
    """A feed file, directory, archive or URL that is not what patchwave reads. Names the source."""

    exit_code = 2
    code = "feed"

    def __init__(self, source: str, message: str, *, fix: str = "") -> None:
        self.source = str(source)
        super().__init__(message, step="feeds", fix=fix or "download one of: " + "; ".join(DOWNLOADS))

    def __str__(self) -> str:
        return f"{self.source}: {self.message} (fix: {self.fix})"

    def render(self) -> str:
        return f"feed error: {self}"
