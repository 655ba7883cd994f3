"""Numba on-disk cache keyed by the project's own source code.

``@njit(cache=True)`` invalidates a cached function only when *its own file* changes, not when a
jitted function it calls in another module does. The backtest pass calls the rebalance step,
the allocation rules and the lot rounding from other modules, so an edit there would otherwise
leave the pass running stale machine code. This module points numba's cache at a folder named
after a hash of every source file of ``backtest`` and ``portfolio``: any edit anywhere selects a
fresh folder, and identical sources share one.

It runs once, when :mod:`portfolio` is imported (before any jitted function is defined). A user
who sets ``NUMBA_CACHE_DIR`` keeps full control; the folder otherwise lives under
``$XDG_CACHE_HOME`` (default ``~/.cache``) in ``portfolio-backtest/numba/<hash>``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["configure_numba_cache", "source_digest"]


def source_digest() -> str:
    """SHA-256 (first 16 hex digits) of the ``.py`` sources of ``portfolio`` and ``backtest``."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in ("portfolio", "backtest"):
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def configure_numba_cache() -> Path | None:
    """Point numba's cache at the source-keyed folder, unless the user chose one.

    Returns
    -------
    Path or None
        The folder used, or None when ``NUMBA_CACHE_DIR`` was set by the user or the folder
        cannot be created (numba then falls back to its default locations).
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "portfolio-backtest" / "numba" / source_digest()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import numba

    numba.config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]
    return folder
