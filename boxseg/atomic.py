"""Atomic file writes: a temporary file beside the target, checked, then renamed, so no
file is ever half-written under its final name. Needs nothing beyond the standard
library, so modules that must import without SimpleITK (training on a GPU machine) can
use it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[Path], object],
    check: Callable[[Path], object] | None = None,
    allow_empty: bool = False,
) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path`` (same suffixes, so writers
    that infer the format from the name still work), check it, then rename it onto ``path``.

    ``check(tmp)`` raises when what was written is not whole (a writer that reports a short
    write without raising, as ITK's does on a full disk); an empty file fails unless
    ``allow_empty``. The file gets the permissions a new file gets (``0o666`` less the
    umask), not the temporary file's owner-only ones, so a group can read results on a
    shared server.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        if not tmp.exists() or (tmp.stat().st_size == 0 and not allow_empty):
            raise OSError(f"writing {path} left an empty file (is the disk full?)")
        if check is not None:
            check(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically; the bytes on disk are checked against the text."""
    data = text.encode()

    def check(tmp: Path) -> None:
        if tmp.stat().st_size != len(data):
            raise OSError(f"writing {tmp.name} stored {tmp.stat().st_size} of {len(data)} bytes (is the disk full?)")

    atomic_write(path, lambda tmp: tmp.write_bytes(data), check, allow_empty=not data)
