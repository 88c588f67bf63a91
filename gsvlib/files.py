"""Writing files so that nothing already written is lost: every write goes to a temporary file beside its target and
is renamed into place; a full disk is named. The bottom layer of gsvlib: it imports nothing from the package."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


def check_file_output(path: str | Path | None, option: str = "--out", kind: str | None = None) -> None:
    """Refuse, before any work, a file output that names a folder (the write at the end would fail), and with
    ``kind`` (a key of :data:`OWN_FILES`) an existing file that is not of that kind: a user's file is never
    replaced."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give the name of a file to write (nothing was changed)")
    if kind is not None and path.is_file() and path.stat().st_size and not OWN_FILES[kind][0](path):
        raise FileExistsError(f"{option} {path} exists and is not {OWN_FILES[kind][1]}, so the kit did not write it; "
                              "choose another name, or move the file (nothing was changed)")


def _json_object(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_bytes()), dict)
    except ValueError:  # not UTF-8, or not JSON
        return False


def _starts_with(mark: bytes) -> Callable[[Path], bool]:
    def test(path: Path) -> bool:
        with open(path, "rb") as f:
            return f.read(len(mark)) == mark
    return test


TABLES_MARK = "<!-- Written by `gsv tables`"  # the first line of every page `gsv tables` writes begins so
# What an existing file must be for a command to replace it: a test of the file, and its description.
OWN_FILES: dict[str, tuple[Callable[[Path], bool], str]] = {
    "json": (_json_object, "a JSON object (results the kit writes)"),
    "tables": (_starts_with(TABLES_MARK.encode()), "a page written by `gsv tables`"),
    "torch": (_starts_with(b"PK\x03\x04"), "a PyTorch file"),
}


def _atomic_write(path: Path, write) -> None:
    check_file_output(path, "the output")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the permissions open() would
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never a half-written one
    except BaseException as e:
        full = isinstance(e, (OSError, RuntimeError)) and _disk_full(e, path.parent)  # before the tmp frees space
        Path(tmp).unlink(missing_ok=True)
        if full:  # torch says "unexpected pos"
            raise OSError(errno.ENOSPC, f"no space left on device while writing {path} ({str(e).strip()[:80]}); free "
                          "some space and run again: the file already there was not changed") from e
        raise


def _disk_full(error: BaseException, folder: Path) -> bool:
    return getattr(error, "errno", None) == errno.ENOSPC or shutil.disk_usage(folder).free < 1 << 20


LOCK_TEXT = re.compile(r"(pid \d+ on \S+)?")  # what a lock file of locked() holds (empty before its first write)


@contextlib.contextmanager
def locked(lock: Path, what: str, advice: str, keep: bool = True):
    """Hold an exclusive lock on the file ``lock`` while the block runs; a second process is refused with an error
    that names ``what`` is in use, the holder and ``advice``. The operating system drops the lock when its holder
    dies: a stale lock never blocks. A lock file this call created is removed again when the block fails, and with
    ``keep=False`` when it ends."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    created = not lock.exists()
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise RuntimeError(f"{what} is in use by {holder}; {advice}") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        except BaseException:
            if created:
                lock.unlink(missing_ok=True)
            raise
        if created and not keep:
            lock.unlink(missing_ok=True)


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove(path: Path) -> None:
    """Delete a file or a folder tree, if it is there."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def temporary(target: Path, name: str) -> bool:
    """Whether ``name`` is a temporary file of an atomic write of ``target`` (:func:`_atomic_write`'s names)."""
    return name.startswith(f".{target.name}.") and name.endswith(".tmp")


def restore_interrupted(target: Path) -> None:
    """Put back the folder :func:`move_into_place` had moved aside when a process died between its two renames."""
    old = target.parent / f".{target.name}.old"
    if old.exists() and not target.exists():
        os.replace(old, target)


def move_into_place(new: Path, target: Path) -> None:
    """Replace ``target`` (a file or a folder) with ``new``, written beside it. A file is replaced atomically; a
    folder is moved aside first (to ``.<name>.old``), and a later call puts it back if the process died before the
    new one took its place, so that a folder is lost only to its replacement."""
    if new.is_dir():
        restore_interrupted(target)
        old = target.parent / f".{target.name}.old"
        remove(old)
        if target.exists():
            os.replace(target, old)
        os.replace(new, target)
        remove(old)
    else:
        os.replace(new, target)


def refuse_overlap(out: Path, inputs: dict[str, Path | str | None], option: str = "--out") -> None:
    """Refuse an output that would replace one of ``inputs`` (named by their keys) or a folder holding one."""
    target = Path(out).resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        given = Path(path).resolve()
        if target == given or target in given.parents:
            raise FileExistsError(f"{option} {out} would replace {name} {path}" + ("" if target == given else
                                  ", which it holds") + f"; choose another {option} (nothing was changed)")


def refuse_foreign(out: Path, ours, writer: str, option: str = "--out") -> None:
    """Refuse to replace ``out`` unless it is absent, an empty folder, or a folder whose every file ``ours`` (a test
    of the path relative to ``out``) says ``writer`` wrote: a user's files are never replaced."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise FileExistsError(f"{option} {out} is a file, which {writer} would replace with a folder; choose a new "
                              f"name (nothing was changed)")
    foreign = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir() and not ours(p.relative_to(out)))
    if foreign:
        raise FileExistsError(f"{option} {out} holds files that {writer} did not write ({', '.join(foreign[:5])}"
                              f"{', ...' if len(foreign) > 5 else ''}); it would replace the whole folder, so choose "
                              "an empty or new folder, or move those files (nothing was changed)")


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f))


def write_text_atomic(path: str | Path, text: str) -> None:
    _atomic_write(Path(path), lambda f: f.write(text.encode()))


def finite_json(obj: Any) -> Any:
    """``obj`` with NaN and infinite floats replaced by None (null), which the JSON standard and strict parsers
    require."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Strict JSON (no NaN or Infinity: those become null), written atomically."""
    write_text_atomic(path, json.dumps(finite_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")
