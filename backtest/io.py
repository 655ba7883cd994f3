"""Atomic output helpers: nothing half-written, ever.

Every file the project writes goes to a temporary file in the destination folder first and is
then renamed over the target with :func:`os.replace`, which is atomic on POSIX and Windows for a
rename within one file system. A crash or a bad input therefore leaves either the old file or the
new one, never a truncated mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["atomic_write_bytes", "atomic_write_csv", "atomic_write_json", "atomic_write_ndjson"]


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    Parameters
    ----------
    path : str or PathLike
        Destination file; its folder is created if missing.
    data : bytes
        Complete file content.

    Returns
    -------
    Path
        The destination path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would (0666 & ~umask).
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def atomic_write_csv(path: str | os.PathLike[str], frame: pd.DataFrame | pd.Series) -> Path:
    """Write a DataFrame or Series as CSV (index included, ``%.17g`` floats: exact round trip)."""
    text = frame.to_csv(float_format="%.17g", lineterminator="\n")
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def atomic_write_json(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write one JSON document with sorted keys (stable bytes for the same content)."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_json_default)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def atomic_write_ndjson(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> Path:
    """Write newline-delimited JSON (one compact object per line, sorted keys)."""
    lines = [
        json.dumps(r, sort_keys=True, separators=(",", ":"), default=_json_default) for r in records
    ]
    body = "\n".join(lines) + ("\n" if lines else "")
    return atomic_write_bytes(path, body.encode("utf-8"))
