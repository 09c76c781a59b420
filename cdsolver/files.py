"""Writing output files so that a reader never sees half a file and two writers never share a temporary file,
and checking an output path before the work that fills it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from .validation import ValidationError

__all__ = ["atomic_write", "check_out"]


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


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a unique temporary file next to ``path`` (``mode`` "w" or "wb"); on a clean exit it is flushed to
    disk and renamed over ``path`` (atomic on one file system), on an exception removed. Concurrent writers of
    one path each rename a whole file: the last one wins. The file gets the permissions of the file it replaces,
    else those of a new file under the process's umask (not the temporary file's owner-only mode)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            with contextlib.suppress(OSError):  # (file systems without Unix permissions)
                os.fchmod(f.fileno(), _mode_for(path))
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def check_out(path: str | Path, folder: bool = False, inputs: Iterable[str | Path | None] = (),
              option: str = "--out") -> None:
    """An output path (named ``option`` in messages): a file (or with ``folder``, a folder) this process can
    create or replace, and none of the command's ``inputs``; else ValidationError naming it. Writability is tried
    with a temporary file in the nearest existing folder (permissions, read-only or special file systems), which
    is removed at once."""
    p = Path(path)
    for q in inputs:
        if q is not None and Path(q).exists() and p.exists() and os.path.samefile(p, q):
            raise ValidationError(f"{option} {p} is also an input of this command; give another name")
    if folder and p.exists() and not p.is_dir():
        raise ValidationError(f"{option} {p} is a file, not a folder")
    if not folder and p.is_dir():
        raise ValidationError(f"{option} {p} is a folder; give a file name")
    if folder:
        where = next((q for q in [p, *p.parents] if q.exists()), Path("."))
        if not where.is_dir():
            raise ValidationError(f"{option} {p}: {where} is not a folder")
    else:
        where = p.parent
        if not where.is_dir():
            raise ValidationError(f"{option} {p}: {where} is not an existing folder")
    if p.is_file() and not os.access(p, os.W_OK):
        raise ValidationError(f"{option} {p}: the file is read-only")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as e:
        raise ValidationError(f"{option} {p}: cannot write in {where} ({e.strerror or e})") from None
