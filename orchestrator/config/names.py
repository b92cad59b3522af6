"""What a name the configuration defines may look like: groups, rings, windows, holiday lists."""

from __future__ import annotations

import re

#: A letter or digit, then letters, digits, ``_``, ``.`` and ``-``.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: The fix a refused name's error names.
NAME_FIX = "use letters, digits, '-', '_' and '.'"
