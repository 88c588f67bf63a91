"""Reading a video (mp4 and other ffmpeg formats, or a folder of frames), segmenting it, writing overlays (a folder of
PNGs, mp4, webm or gif) with a key of the class colours."""
from __future__ import annotations

import math
import queue
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Iterator

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import torch

from gsvlib.data.io import DatasetError, read_rgb, write_png
from gsvlib.data.labels import LabelTable
from gsvlib.files import (OWN_FILES, locked, marked, move_into_place, output_path, refuse_foreign, refuse_overlap,
                          remove, restore_interrupted, write_json_atomic)
from gsvlib.pictures import legend_strip, overlay
from gsvlib.progress import progress_bar
from gsvlib.segmenter import VideoSegmenter

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _decoder_said(error: Exception) -> str:
    """The last line of a decoder's error: ffmpeg's own explanation, without its banner and build options."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]


def _same_size(files: list[Path]) -> Iterator[np.ndarray]:
    """The frames of ``files``, refusing one whose size differs from the first's (a video's frames share one)."""
    size = None
    for path in files:
        frame = read_rgb(path)
        if size is not None and frame.shape != size:
            raise DatasetError(f"{path} is {frame.shape[1]}x{frame.shape[0]} but {files[0].name} and the frames "
                               f"before it are {size[1]}x{size[0]}; the frames of one video share one size: move it "
                               "out of the folder or resize it")
        size = frame.shape
        yield frame


def read_frames(source: str | Path) -> tuple[Iterator[np.ndarray], float | None, int | None]:
    """(H, W, 3) uint8 frames of a video file or of the images of a folder (in natural name order), the frame rate
    (None for a folder) and the frame count where it is known."""
    source = Path(source)
    if source.is_dir():
        files = sorted((p for p in source.iterdir() if p.suffix.lower() in FRAME_SUFFIXES
                        and not p.name.startswith(".")), key=_natural_key)  # ._x.png: macOS metadata, no frame
        if not files:
            raise DatasetError(f"{source} holds no frames ({', '.join(FRAME_SUFFIXES)} files)")
        return _same_size(files), None, len(files)
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: give a video file or a folder of frames")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise DatasetError(f"{source} is not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    try:
        meta = iio.immeta(source, plugin="FFMPEG")
        frames = iio.imiter(source, plugin="FFMPEG")
        first = next(frames)
    except Exception as e:  # imageio raises several types for undecodable files
        raise DatasetError(f"{source} could not be decoded as a video ({_decoder_said(e)}): it is damaged or not "
                           "a video; re-encode it, or extract its frames into a folder") from e
    fps, duration = meta.get("fps"), meta.get("duration")
    count = round(fps * duration) if fps and duration and math.isfinite(fps * duration) else None

    def chain():
        yield np.asarray(first)[..., :3]
        for f in frames:
            yield np.asarray(f)[..., :3]

    return chain(), fps, count


EVEN_SIDES = "pad=ceil(iw/2)*2:ceil(ih/2)*2"  # ffmpeg's filter: pad the right and bottom edge to even sides
# What ``segment_video`` writes, by the suffix of ``out``: a folder of PNGs (no suffix) or a video file.
VIDEO_WRITERS = {
    # H.264 at x264's "ultrafast" preset: 3 ms of CPU per 480x414 frame against 9 at "veryfast", for a file twice
    # the size, which leaves the cores to the segmenter (docs/speed.md, "End to end"). Its 4:2:0 colour needs even
    # sides: an odd side gets one black pixel more.
    ".mp4": lambda path, fps: iio2.get_writer(path, fps=fps, macro_block_size=1,
                                              ffmpeg_params=["-preset", "ultrafast", "-vf", EVEN_SIDES]),
    ".webm": lambda path, fps: iio2.get_writer(path, fps=fps, codec="libvpx-vp9", macro_block_size=1),
    ".gif": lambda path, fps: iio2.get_writer(path, duration=1000 / fps, loop=0),  # pillow; duration in ms
}
LOW_FPS = 10  # below this many frames per second, motion between frames is too large for propagation
OVERLAY_FILE = re.compile(r"\d{6,}\.png|timings\.json")  # what gsv segment writes into an output folder


def output_kind(out: Path) -> str:
    """"folder" for a path without suffix, else its video suffix; anything else is refused with the choices."""
    suffix = out.suffix.lower()
    if not suffix:
        return "folder"
    if suffix not in VIDEO_WRITERS:
        raise ValueError(f"--out {out}: cannot write {suffix} files; give a path ending in "
                         f"{', '.join(VIDEO_WRITERS)}, or one without a suffix for a folder of PNGs")
    return suffix


# Where a frame's time goes on gsv segment's path, in ms per frame: decoding (its own thread), the model (the main
# thread), drawing the overlay and encoding it (the writer's thread), and the main thread's waits for a decoded frame
# and for room in the writer's queue. The three threads overlap: the end-to-end time per frame is about the largest of
# decode, model + waits, overlay + encode, plus what they take from each other's cores.
STAGES = ("decode", "model", "overlay", "encode", "wait_input", "wait_output")
WAITED = 0.1  # waits above this share of the model's time name the thread the model waits for


def bound_by(stage_ms: dict) -> str:
    """What bounds the end-to-end rate: "decoding" or "drawing and encoding" when the model waited for it more than
    WAITED of its own time, else "the model"."""
    waits = {"decoding": stage_ms["wait_input"], "drawing and encoding": stage_ms["wait_output"]}
    slowest = max(waits, key=waits.get)
    return slowest if waits[slowest] > WAITED * stage_ms["model"] else "the model"


def describe_stages(summary: dict) -> str:
    """One line: end-to-end and model-only FPS, each stage's ms per frame, and what bounds the rate."""
    ms = summary["stage_ms"]
    return (f"end to end {summary['fps_end_to_end']:.1f} FPS, {summary['fps_end_to_end'] / summary['fps']:.0%} of the "
            f"model's own {summary['fps']:.1f}; per frame: decode {ms['decode']:.1f} ms, model {ms['model']:.1f}, "
            f"overlay {ms['overlay']:.1f}, encode {ms['encode']:.1f} (decode and overlay + encode run in threads of "
            f"their own), the model waited {ms['wait_input']:.1f} ms for frames and {ms['wait_output']:.1f} ms for "
            f"the writer: bound by {summary['bound_by']}")


_END = object()  # closes a queue between threads
AHEAD = 4  # frames decoded ahead of the segmenter, and pictures queued for the encoder


def timed(items: Iterable, spent: dict, stage: str) -> Iterator:
    """``items``, adding the seconds each ``next`` takes to ``spent[stage]`` (in whichever thread draws them)."""
    items = iter(items)
    while True:
        t0 = time.perf_counter()
        try:
            item = next(items)
        except StopIteration:
            return
        spent[stage] += time.perf_counter() - t0
        yield item


def read_ahead(frames: Iterable, depth: int = AHEAD) -> Iterator:
    """``frames``, decoded in a background thread up to ``depth`` items ahead; its error is raised here, in order.
    Closing the returned generator (a ``break`` or an error downstream) stops the thread."""
    items: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def work():
        try:
            for item in frames:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((_END, None))
        except BaseException as e:  # handed to the consumer, which raises it
            items.put((_END, e))

    thread = threading.Thread(target=work, name="gsv-decode", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class WriteBehind:
    """Calls ``write(item)`` for each ``put(item)`` in a background thread, at most ``depth`` items behind.
    ``close()`` waits for the last write and raises the first error any write raised (so does a later ``put``)."""

    def __init__(self, write: Callable, depth: int = AHEAD):
        self._items: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._write = write
        self._thread = threading.Thread(target=self._work, name="gsv-encode", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (item := self._items.get()) is not _END:
            if self._error is None:  # after an error the rest is drained, not written
                try:
                    self._write(item)
                except BaseException as e:
                    self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item) -> None:
        self._raise()
        self._items.put(item)

    def close(self) -> None:
        self._items.put(_END)
        self._thread.join()
        self._raise()


def segment_video(segmenter: VideoSegmenter, source, out: str | Path, table: LabelTable, alpha: float = 0.5,
                  max_frames: int | None = None, progress: bool = True, legend: bool = True,
                  fps: float | None = None, labels: bool = False) -> dict:
    """Segment every frame of ``source``; write colour overlays (with a strip of the class colours under each, unless
    ``legend=False``) to ``out`` (a folder of PNGs when it has no suffix, else an .mp4, .webm or .gif file) and
    per-frame timings to ``out/timings.json`` (folder) or ``<out>.timings.json`` (file). ``labels=True`` writes each
    frame's class ids instead, as the datasets' label files hold them (single-channel PNGs, 0..C-1, ``table``'s
    order), into a folder: nothing is drawn, and a CamVid frame's file takes 4 KB against an overlay's 260 KB.

    ``fps`` is the source's frame rate (a video file's own is used when not given); below LOW_FPS with a keyframe
    interval above 1, a warning says that propagation will not hold up. Frames are decoded ahead and pictures drawn
    and encoded behind, each in a background thread, so that the segmenter seldom waits for either. The summary's
    ``fps`` counts the segmenter's steps alone, ``fps_end_to_end`` the wall clock from first read to last write;
    ``stage_ms`` says where each frame's time went (:data:`STAGES`) and ``bound_by`` what limits the rate.

    What a user owns is never replaced: ``out`` may not be the input or hold it, an existing output folder may hold
    only what gsv segment writes, and a second run into the same ``out`` is refused while the first one writes."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames (--max-frames) must be at least 1, got {max_frames}")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha (--alpha) is the overlay's opacity, in [0, 1]; got {alpha}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps (--fps) is the input's frame rate, a positive number; got {fps}")
    out = output_path(Path(out))  # through a symlink: its target is replaced, the link stays
    kind = output_kind(out)
    if labels and kind != "folder":
        raise ValueError(f"--labels writes a folder of label PNGs, not a {kind} video: give --out a folder (a path "
                         f"without a suffix), e.g. {out.with_suffix('')}")
    refuse_overlap(out, {"the input": source})
    if kind == "folder":
        refuse_foreign(out, lambda p: OVERLAY_FILE.fullmatch(str(p)) is not None, "gsv segment")
    elif out.is_dir():
        raise FileExistsError(f"--out {out} is a folder; a {kind} video needs a file name (nothing was changed)")
    elif out.is_file() and not (out.with_suffix(".timings.json").is_file()
                                and OWN_FILES["json"][0](out.with_suffix(".timings.json"))):
        raise FileExistsError(f"--out {out} exists without the {out.with_suffix('.timings.json').name} that gsv "
                              "segment writes beside its videos (with the kit's mark), so it is not one of them; choose "
                              "another name, or move the file (nothing was changed)")
    with locked(out.parent / f".{out.name}.lock", f"--out {out}",
                "wait for the other gsv segment to finish, or choose another --out", keep=False):
        return _write_outputs(segmenter, source, out, kind, table, alpha, max_frames, progress, legend, fps, labels)


def _write_outputs(segmenter: VideoSegmenter, source, out: Path, kind: str, table: LabelTable, alpha: float,
                   max_frames: int | None, progress: bool, legend: bool, fps: float | None, labels: bool) -> dict:
    frames, source_fps, count = read_frames(source)
    fps = fps or source_fps
    if fps is not None and fps < LOW_FPS and segmenter.interval > 1:
        warnings.warn(f"{source} runs at {fps:g} frames/s: objects move too far between frames for propagation, and "
                      f"non-keyframes will come out as blobs; use --interval 1 (every frame a keyframe) or a source "
                      f"of at least {LOW_FPS} frames/s", stacklevel=2)
    total = min(count, max_frames) if count is not None and max_frames is not None else count or max_frames
    out.parent.mkdir(parents=True, exist_ok=True)
    # Everything is written beside ``out`` first and moved into place at the end: a run that fails part way leaves an
    # earlier result at ``out`` as it was.
    partial = out.parent / (f".{out.name}.partial" if kind == "folder" else f".{out.stem}.partial{out.suffix}")
    remove(partial)  # left by a run that was killed (the lock keeps a running one's)
    restore_interrupted(out)
    writer = None if kind == "folder" else VIDEO_WRITERS[kind](partial, fps or 15)
    timings, key = [], None
    spent = dict.fromkeys(STAGES, 0.0)  # seconds per stage; each is added to by one thread only

    def write(item) -> None:  # in the encoder's thread: overlay and legend (or the class ids as bytes), encode
        nonlocal key
        i, frame, ids = item
        t0 = time.perf_counter()
        if labels:
            picture = ids.astype(np.uint8)  # (H, W) class ids
        else:
            picture = overlay(frame, ids, table, alpha)
            if legend:
                key = key if key is not None else legend_strip(table, picture.shape[1])
                picture = np.concatenate((picture, key))
        t1 = time.perf_counter()
        if writer is not None:
            writer.append_data(picture)
        else:
            write_png(partial / f"{i:06d}.png", picture)
        spent["overlay"] += t1 - t0
        spent["encode"] += time.perf_counter() - t1

    segmenter.reset()
    start = time.perf_counter()
    try:
        behind = WriteBehind(write)
        decoded = read_ahead(timed(frames, spent, "decode"))
        try:
            for i, frame in enumerate(timed(progress_bar(decoded, total=total, desc=f"segmenting {Path(source).name}",
                                                         disable=not progress, unit="frame"), spent, "wait_input")):
                if max_frames is not None and i >= max_frames:
                    break
                t0 = time.perf_counter()
                step = segmenter.step(torch.tensor(frame).permute(2, 0, 1), labels=True)  # a writable copy
                ids = step.labels[0].cpu().numpy()  # (H, W)
                t1 = time.perf_counter()
                timings.append({"frame": i, "keyframe": step.is_keyframe, "forced": step.forced,
                                "ms": round((t1 - t0) * 1000, 2)})
                spent["model"] += t1 - t0
                behind.put((i, frame, ids))
                spent["wait_output"] += time.perf_counter() - t1
        finally:
            decoded.close()
            try:
                behind.close()
            finally:
                if writer is not None:
                    writer.close()
        if not timings:
            raise DatasetError(f"{source} holds no frames")
        if count is not None and len(timings) < min(count, max_frames or count):
            warnings.warn(f"{source}: its container announces {count} frames but only {len(timings)} could be decoded; "
                          "the file may be truncated or damaged (the overlays cover the frames read)", stacklevel=3)
    except BaseException:
        remove(partial)
        raise
    wall = time.perf_counter() - start
    keyframe_ms = [t["ms"] for t in timings if t["keyframe"]]
    other_ms = [t["ms"] for t in timings if not t["keyframe"]]
    n = len(timings)
    stage_ms = {stage: round(1000 * s / n, 2) for stage, s in spent.items()}
    summary = {"frames": n, "keyframe_ms_mean": round(float(np.mean(keyframe_ms)), 2),
               "non_keyframe_ms_mean": round(float(np.mean(other_ms)), 2) if other_ms else None,
               "fps": round(1000 * n / sum(t["ms"] for t in timings), 2),
               "fps_end_to_end": round(n / wall, 2), "stage_ms": stage_ms, "bound_by": bound_by(stage_ms),
               "written": "labels" if labels else "overlays", "per_frame": timings}
    if kind == "folder":
        write_json_atomic(partial / "timings.json", marked(summary))
    move_into_place(partial, out)
    if kind != "folder":
        write_json_atomic(out.with_suffix(".timings.json"), marked(summary))
    return summary
