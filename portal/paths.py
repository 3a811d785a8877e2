"""Where the repository-level `templates/`, `static/` and `migrations/` folders are.

They sit at the repository root (see docs/architecture.md). A source checkout or editable
install finds them beside the package; a wheel install puts them under `<prefix>/share/ebike-archive`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_SHARE = Path(sys.prefix) / "share" / "ebike-archive"


def resource_dir(name: str) -> Path:
    for base in (_ROOT, _SHARE):
        candidate = base / name
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"cannot find the {name}/ folder next to the portal package or in {_SHARE}")
