"""The CISA Known Exploited Vulnerabilities catalog (cisagov/kev-data, schema v2 of the JSON feed).

``{title, catalogVersion, dateReleased, count, vulnerabilities: [{cveID, vendorProject, product,
vulnerabilityName, dateAdded, shortDescription, requiredAction, dueDate, knownRansomwareCampaignUse
("Known" | "Unknown"), notes, cwes}]}``. Kept per CVE: who, what, when added, the due date, ransomware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.vulns.errors import FeedError


@dataclass(frozen=True, slots=True)
class KevEntry:
    cve: str
    vendor_project: str
    product: str
    name: str
    date_added: str  # YYYY-MM-DD
    due_date: str  # YYYY-MM-DD (the federal remediation deadline)
    ransomware: bool  # knownRansomwareCampaignUse == "Known"


@dataclass(frozen=True)
class KevCatalog:
    version: str  # catalogVersion, e.g. "2025.08.25"
    released: str  # dateReleased
    entries: Mapping[str, KevEntry] = field(default_factory=dict)

    def get(self, cve: str) -> KevEntry | None:
        return self.entries.get(cve)


def looks_like_kev(data: Any) -> bool:
    return isinstance(data, Mapping) and "catalogVersion" in data and "vulnerabilities" in data


def parse_kev(data: Any, *, origin: str) -> KevCatalog:
    if not looks_like_kev(data) or not isinstance(data["vulnerabilities"], list):
        raise FeedError(
            origin, "not the CISA KEV catalog: expected catalogVersion and a vulnerabilities list"
        )
    entries = {}
    for i, v in enumerate(data["vulnerabilities"]):
        if not isinstance(v, Mapping) or not str(v.get("cveID", "")).startswith("CVE-"):
            raise FeedError(origin, f"vulnerabilities[{i}] has no cveID")
        entry = KevEntry(
            cve=str(v["cveID"]), vendor_project=str(v.get("vendorProject", "")), product=str(v.get("product", "")),
            name=str(v.get("vulnerabilityName", "")), date_added=str(v.get("dateAdded", "")),
            due_date=str(v.get("dueDate", "")), ransomware=str(v.get("knownRansomwareCampaignUse", "")) == "Known",
        )  # fmt: skip
        entries[entry.cve] = entry
    return KevCatalog(str(data["catalogVersion"]), str(data.get("dateReleased", "")), entries)


def compact(entry: KevEntry) -> dict[str, Any]:
    """One entry in the catalog's own field names (what the fact store caches)."""
    return {
        "cveID": entry.cve, "vendorProject": entry.vendor_project, "product": entry.product,
        "vulnerabilityName": entry.name, "dateAdded": entry.date_added, "dueDate": entry.due_date,
        "knownRansomwareCampaignUse": "Known" if entry.ransomware else "Unknown",
    }  # fmt: skip
