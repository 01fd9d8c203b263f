"""Small file helpers shared by remap's writers: atomic replacement and hashing."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_text", "sha256_of"]


@contextlib.contextmanager
def atomic_path(path, *, prefix=None, suffix=None, mkdir=True):
    """Yield a temporary path next to ``path``; move it onto ``path`` on success.

    The temporary file does not exist when the block starts (so writers that
    refuse to overwrite can use it); if the block raises, whatever was written
    there is removed and ``path`` is left untouched.

    Parameters
    ----------
    path : str or path
        Final destination.
    prefix, suffix : str, optional
        Name parts of the temporary file (default ``".<name>."`` and the
        destination's suffix, which some writers use to pick a format).
    mkdir : bool
        Create the parent directory if needed.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent,
                               prefix=f".{path.name}." if prefix is None else prefix,
                               suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text, *, prefix=None):
    """Write ``text`` (UTF-8) to ``path`` atomically, flushed to disk first."""
    with atomic_path(path, prefix=prefix, suffix="") as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def sha256_of(path, chunk=1 << 20):
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
