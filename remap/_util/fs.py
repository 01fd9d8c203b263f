"""Small file helpers shared by remap's writers: atomic replacement, permissions, locks, hashing.

Files remap writes get the permissions any program's new files get,
``0o666 & ~umask`` (:func:`mkstemp` fixes the ``0o600`` of
`tempfile.mkstemp`), and outputs are guarded (:func:`check_output`,
:func:`output_lock`) so that a run never replaces its own input, an existing
result it was not asked to replace, or a file another run is writing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from ..exceptions import OutputError

__all__ = ["atomic_path", "atomic_write_text", "fsync_dir", "sha256_of", "current_umask", "mkstemp",
           "mkdtemp", "check_output", "output_lock", "same_file"]


def current_umask():
    """The process's umask (read from ``/proc`` where possible, so no race with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - not Linux
    os.umask(mask)
    return mask


def mkstemp(**kwargs):
    """`tempfile.mkstemp` whose file has the permissions of a normal new file.

    `tempfile.mkstemp` creates ``0o600`` files, which are then renamed into
    place: results, shards and beam files would be private whatever the
    user's umask.  This one sets ``0o666 & ~umask``.

    Returns
    -------
    fd : int
    path : str
    """
    fd, path = tempfile.mkstemp(**kwargs)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd, path


def mkdtemp(**kwargs):
    """`tempfile.mkdtemp` whose directory has mode ``0o777 & ~umask`` (not ``0o700``)."""
    path = tempfile.mkdtemp(**kwargs)
    os.chmod(path, 0o777 & ~current_umask())
    return path


def same_file(a, b):
    """True when paths ``a`` and ``b`` name one file (symlinks and hard links resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_output(path, inputs=(), *, overwrite=False, what="output"):
    """Refuse an output that would destroy data.

    Parameters
    ----------
    path : str or path
        The output file.
    inputs : iterable of str or path
        The run's input files; the output may be none of them (also through a
        symlink or a hard link).
    overwrite : bool
        Allow replacing an existing output (never an input).
    what : str
        How to call the output in messages (e.g. ``"-o/--output"``).

    Raises
    ------
    OutputError
        ``path`` is one of ``inputs``, or it exists and ``overwrite`` is
        False, or it exists and is not a regular file.
    """
    path = Path(path)
    for item in inputs:
        if same_file(path, item):
            raise OutputError(f"{what} {path} is also an input ({item}); writing it would "
                              "destroy that input. Choose another output name")
    if os.path.lexists(path):
        if path.is_dir():
            raise OutputError(f"{what} {path} is a directory")
        if not overwrite:
            raise OutputError(f"{what} {path} exists; remove it or pass --overwrite "
                              "(overwrite=True) to replace it")


@contextlib.contextmanager
def output_lock(path):
    """Hold an exclusive lock on an output while it is computed and written.

    The lock is the hidden file ``.<name>.lock`` next to the output (an
    OS-level lock through :mod:`filelock`, released when the process ends,
    even by a crash; the empty lock file itself stays, since removing it
    would open a race between two later runs).  A second run on the same
    output fails at once instead of racing the first.

    Yields
    ------
    lock_path : str

    Raises
    ------
    OutputError
        Another process holds the lock.
    """
    import filelock

    path = Path(path)
    lock_path = str(path.parent / f".{path.name}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(lock_path, timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise OutputError(f"{path} is being written by another remap run (the lock "
                          f"{lock_path} is held); wait for it to finish or choose another "
                          "output") from None
    try:
        yield lock_path
    finally:
        lock.release()


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


def fsync_dir(path) -> None:
    """Flush a directory's entries to disk (after a rename into it); errors are ignored.

    Some file systems cannot open or fsync a directory; the rename itself is
    atomic either way, only its durability across a power loss is at stake.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_of(path, chunk=1 << 20):
    """Hex SHA-256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
