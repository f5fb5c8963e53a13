"""Where editcollapse keeps caches and results.

Read at call time (never at import) so that tests and users can redirect them with environment
variables: ``EDITCOLLAPSE_CACHE`` (model conversions, covariance statistics, downloaded data) and
``EDITCOLLAPSE_WAREHOUSE`` (the Parquet warehouse root).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user's cache directory for editcollapse (created on demand)."""
    explicit = os.environ.get("EDITCOLLAPSE_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "editcollapse"
    root.mkdir(parents=True, exist_ok=True)
    return root


def warehouse_dir() -> Path:
    """The default warehouse root: ``$EDITCOLLAPSE_WAREHOUSE`` or ``./warehouse``."""
    return Path(os.environ.get("EDITCOLLAPSE_WAREHOUSE", "warehouse"))
