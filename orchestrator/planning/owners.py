"""Who owns a VM, for the notifications: the names its platform metadata carries.

The owner label (``[notifications] owner_label``, default ``owner``) is read from the VM's labels
(``owner=a,b``) and its tags (``owner:a`` or ``owner=a``), as its provider reported them; names
are stripped of a leading ``@``, de-duplicated and sorted, so a step's owners are the same whatever
order the platform lists them in.
"""

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
