"""TODO docstring."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


# ------------------------------------------------------------------------------------ owners
def owners_of(tags: Iterable[str], labels: Mapping[str, str], label: str = "owner") -> tuple[str, ...]:
    """Owner names from a VM's label ``<label>=a,b`` and tags ``<label>:a`` / ``<label>=a``."""
    names: list[str] = []
    if labels.get(label):
        names.extend(labels[label].split(","))
    for tag in tags:
        for sep in (":", "="):
            prefix = f"{label}{sep}"
            if tag.startswith(prefix):
                names.append(tag[len(prefix) :])
    return tuple(sorted({n.strip().lstrip("@") for n in names if n.strip().lstrip("@")}))
