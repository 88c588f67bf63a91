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
import zlib
from pathlib import Path
from typing import Any, Callable

import torch


def check_file_output(path: str | Path | None, option: str = "--out", kind: str | None = None) -> None:
    """Refuse, before any work, a file output that names a folder (the write at the end would fail), and with
    ``kind`` (a key of :data:`OWN_FILES`) an existing file that the kit did not write (it lacks the kind's mark): a
    user's file is never replaced. A symlink is judged by the file it points to, which the write replaces in place."""
    if path is None:
        return
    path = output_path(Path(path))
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give the name of a file to write (nothing was changed)")
    above = next((p for p in path.parents if p.exists()), None)  # the nearest part of its folder that exists
    if above is not None and not above.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{option} {path}: {above} is a file, not a folder; choose another "
                                 "place (nothing was changed)")
    if kind is not None and path.is_file() and path.stat().st_size and not OWN_FILES[kind][0](path):
        raise FileExistsError(f"{option} {path} exists and is not {OWN_FILES[kind][1]}: the kit replaces only what it "
                              "wrote; choose another name, or move the file (nothing was changed)")


def output_path(path: Path) -> Path:
    """Where an output at ``path`` is written: the file or folder a symlink points to (resolved), so that replacing
    it keeps the user's link a link; ``path`` itself otherwise."""
    return path.resolve() if path.is_symlink() else path


MARK = {"written_by": "gsvkit"}  # in every JSON result and PyTorch file the kit writes: what lets it replace them


def marked(obj: dict) -> dict:
    """``obj`` with the kit's :data:`MARK`, as every result and PyTorch file it writes carries it."""
    return {**obj, **MARK}


def _is_marked(obj: Any) -> bool:
    return isinstance(obj, dict) and all(obj.get(k) == v for k, v in MARK.items())


def _kit_json(path: Path) -> bool:
    try:
        obj = json.loads(path.read_bytes())
    except ValueError:  # not UTF-8, or not JSON
        return False
    return _is_marked(obj) or (isinstance(obj, dict) and _earlier_result(obj))


def _earlier_result(obj: dict) -> bool:
    """A result that a version before the mark wrote, known by its shape: a `gsv run` result (an experiment block
    with the checkpoint's sha256), a `gsv eval` report (a protocol, image-only scores, a flow error or keyframe
    schedules), a `gsv bench` report or matrix, the tour's results, or `gsv segment`'s timings."""
    meta = obj.get("experiment")
    parts = [v for v in obj.values() if isinstance(v, dict)]
    return ((isinstance(meta, dict) and "checkpoint_sha256" in meta)
            or any({"intervals", "bootstrap"} <= set(v) or {"epe", "zero_flow_epe"} <= set(v) for v in parts)
            or (isinstance(obj.get("image"), dict) and all(isinstance(v, dict) and "miou" in v
                                                          for v in obj["image"].values()))
            or any(keys <= set(obj) for keys in _EARLIER_REPORTS))


_EARLIER_REPORTS = ({"fixed", "policies", "timing_ms"}, {"gsvnet", "image_only", "gflops"},  # schedules, bench
                    {"environment", "runs", "skipped"}, {"accuracy", "benchmark", "config"},  # bench matrix, tour
                    {"frames", "per_frame", "fps"})  # gsv segment's timings


def _kit_torch(path: Path) -> bool:
    """A PyTorch file the kit wrote: marked, or (before the mark) a checkpoint or weights file, whose dict holds the
    model and its config."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a PyTorch file, or one holding objects weights_only refuses: not the kit's
        return False
    return _is_marked(obj) or (isinstance(obj, dict) and {"model", "model_config"} <= set(obj))


def _starts_with(*marks: bytes) -> Callable[[Path], bool]:
    def test(path: Path) -> bool:
        with open(path, "rb") as f:
            head = f.read(max(map(len, marks)))
        return any(head.startswith(mark) for mark in marks)
    return test


PNG_MARK = (b"Comment", b"written by gsvkit")  # a tEXt chunk (keyword, text) in every figure the kit writes


def _png_chunks(data: bytes):
    """(type, payload, end offset) of each chunk of a PNG's bytes, up to the first IDAT."""
    at = 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        kind = data[at + 4:at + 8]
        yield kind, data[at + 8:at + 8 + length], at + 12 + length
        if kind == b"IDAT":
            return
        at += 12 + length


def _kit_png(path: Path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and any(kind == b"tEXt" and payload == b"\0".join(PNG_MARK)
                                                 for kind, payload, _ in _png_chunks(data))


def mark_png(path: str | Path) -> None:
    """Put the kit's mark (a tEXt chunk after IHDR, :data:`PNG_MARK`) into the PNG at ``path``: the picture is
    unchanged, and a later export may replace the file."""
    path = Path(path)
    if _kit_png(path):
        return
    data = path.read_bytes()
    kind, _, end = next(_png_chunks(data))
    if data[:8] != b"\x89PNG\r\n\x1a\n" or kind != b"IHDR":
        raise ValueError(f"{path} is not a PNG file")
    payload = b"tEXt" + b"\0".join(PNG_MARK)
    chunk = (len(payload) - 4).to_bytes(4, "big") + payload + zlib.crc32(payload).to_bytes(4, "big")
    _atomic_write(path, lambda f: f.write(data[:end] + chunk + data[end:]))


TABLES_MARK = "<!-- Written by `gsv tables`"  # the first line of every page `gsv tables` writes begins so
EARLIER_TOUR_PAGE = b"# Results of `make tour`"  # the first line of the tour's page before `gsv tables` wrote it
# What an existing file must be for a command to replace it: a test of the file, and its description.
OWN_FILES: dict[str, tuple[Callable[[Path], bool], str]] = {
    "json": (_kit_json, "a result the kit wrote (JSON with its mark)"),
    "tables": (_starts_with(TABLES_MARK.encode(), EARLIER_TOUR_PAGE), "a page written by `gsv tables`"),
    "torch": (_kit_torch, "a checkpoint or weights file the kit wrote"),
    "png": (_kit_png, "a figure the kit wrote (a PNG with its mark)"),
}


def _atomic_write(path: Path, write) -> None:
    path = output_path(path)  # through a symlink: the file it points to is replaced, the link stays
    check_file_output(path, "the output")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(errno.ENOTDIR, f"cannot write {path}: a part of its folder {path.parent} is a file, "
                                 "not a folder; choose another place (nothing was changed)") from None
    except PermissionError:
        raise PermissionError(errno.EACCES, f"cannot write {path}: its folder {path.parent} is read-only or not "
                              "yours; choose another place, or make it writable (nothing was changed)") from None
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
        cut = _cut_short(e, path.parent) if isinstance(e, (OSError, RuntimeError)) else None  # before tmp frees space
        Path(tmp).unlink(missing_ok=True)
        if cut:
            raise OSError(cut[0], f"{cut[1]} while writing {path} ({str(e).strip()[:80]}); make room and run again: "
                          "the file already there was not changed") from e
        raise


def _cut_short(error: BaseException, folder: Path) -> tuple[int, str] | None:
    """(errno, why in words) where the disk or a limit stopped a write part way (torch says only "unexpected pos");
    None for any other error."""
    number = getattr(error, "errno", None)
    if number == errno.ENOSPC or shutil.disk_usage(folder).free < 1 << 20:
        return errno.ENOSPC, "no space left on device"
    if number == errno.EFBIG:
        return errno.EFBIG, "the file grew past the file-size limit (ulimit -f)"
    if "unexpected pos" in str(error):
        return errno.EIO, "the write was cut short (a full disk, or a file-size limit: ulimit -f)"
    return None


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


def lock_holder(lock: Path) -> str | None:
    """Who holds the lock file ``lock`` of :func:`locked` (its text, e.g. "pid 12 on host"), or None when nobody
    does or it does not exist."""
    try:
        f = open(lock, "r")
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: a probe that never blocks a holder
        except BlockingIOError:
            return f.read().strip() or "another process"
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


def sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove(path: Path) -> None:
    """Delete a file or a folder tree, if it is there (a symlink: the link, never what it points to)."""
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
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


def shown(path: str | Path) -> str:
    """``path`` as messages and records give it: relative to the working directory where it lies under it, else
    absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


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
