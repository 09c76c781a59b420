"""Writing output files so that a reader never sees half a file and two writers never share a temporary file,
checking an output path before the work that fills it, and an input path before it is read."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from .validation import ValidationError

__all__ = ["atomic_write", "check_in", "check_out", "numpy_kind"]


def _read_umask() -> int:
    """The process's umask, read once at import (setting it to read it is process-wide: not done later, when other
    threads may create files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _mode_for(path: Path) -> int:
    """The permission bits of the file at ``path``, or for a new file ``0o666`` less the umask."""
    with contextlib.suppress(OSError):
        return path.stat().st_mode & 0o7777
    return 0o666 & ~_UMASK


def _target(path: Path) -> Path:
    """The file a write to ``path`` replaces: ``path``, or for a symlink the file it points to (which may not
    exist yet)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a unique temporary file next to ``path`` (``mode`` "w" or "wb"); on a clean exit it is flushed to
    disk and renamed over ``path`` (atomic on one file system), on an exception removed. Concurrent writers of
    one path each rename a whole file: the last one wins. The file gets the permissions of the file it replaces,
    else those of a new file under the process's umask (not the temporary file's owner-only mode). A symlink is
    written through: the file it points to is replaced, the link kept. An existing ``path`` that is not a
    regular file (a folder, device, FIFO or socket) is never replaced: OSError (EEXIST) before anything is
    written."""
    path = Path(path)
    target = _target(path)
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(os.stat(target).st_mode):
            raise OSError(errno.EEXIST, "exists and is not a regular file (a folder, device, FIFO or socket); "
                          "not replaced", str(path))
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            with contextlib.suppress(OSError):  # (file systems without Unix permissions)
                os.fchmod(f.fileno(), _mode_for(target))
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_out(path: str | Path, folder: bool = False, inputs: Iterable[str | Path | None] = (),
              option: str = "--out") -> None:
    """An output path (named ``option`` in messages): a file (or with ``folder``, a folder) this process can
    create or replace, and none of the command's ``inputs``; else ValidationError naming it. An existing file
    must be a regular one (not a device, FIFO or socket); a symlink counts as the file it points to, which is
    what ``atomic_write`` replaces. Writability is tried with a temporary file in the nearest existing folder
    (permissions, read-only or special file systems), which is removed at once."""
    p = Path(path)
    for q in inputs:
        if q is not None and Path(q).exists() and p.exists() and os.path.samefile(p, q):
            raise ValidationError(f"{option} {p} is also an input of this command; give another name")
    try:
        os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as e:  # (a symlink loop, a folder on the way that cannot be searched)
        raise ValidationError(f"{option} {p}: {e.strerror or e}") from None
    if folder and p.exists() and not p.is_dir():
        raise ValidationError(f"{option} {p} is a file, not a folder")
    if not folder and p.is_dir():
        raise ValidationError(f"{option} {p} is a folder; give a file name")
    if not folder and p.exists() and not p.is_file():
        raise ValidationError(f"{option} {p} is not a regular file (a device, FIFO or socket); give a file name")
    if folder:
        where = next((q for q in [p, *p.parents] if q.exists()), Path("."))
        if not where.is_dir():
            raise ValidationError(f"{option} {p}: {where} is not a folder")
    else:
        where = _target(p).parent
        if not where.is_dir():
            raise ValidationError(f"{option} {p}: {where} is not an existing folder")
    if p.is_file() and not os.access(p, os.W_OK):
        raise ValidationError(f"{option} {p}: the file is read-only")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        raise ValidationError(f"{option} {p}: cannot write in {where} ({e.strerror or e})") from None


def check_in(path: str | Path, what: str) -> Path:
    """An input file (``what`` names it in messages, e.g. "inputs"): ``path`` if it is an existing file, else
    ValidationError saying that it is missing or a folder."""
    p = Path(path)
    if p.is_dir():
        raise ValidationError(f"{what} file {p} is a folder, not a file")
    if not p.exists():
        raise ValidationError(f"{what} file not found: {p}")
    if not p.is_file():
        raise ValidationError(f"{what} file {p} is not a regular file (a device, FIFO or socket)")
    return p


def numpy_kind(path: str | Path) -> str | None:
    """``"npz"`` (a zip archive, ``numpy.savez``), ``"npy"`` (``numpy.save``) or None, by the file's first bytes:
    ``np.load`` would read any other file as an .npy array or a pickle. OSError where it cannot be read."""
    with open(path, "rb") as f:
        start = f.read(6)
    return "npz" if start.startswith(b"PK\x03\x04") else "npy" if start == b"\x93NUMPY" else None
