"""Reading a video (mp4 and other ffmpeg formats, or a folder of frames), segmenting it, writing overlays."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Iterator

import imageio.v2 as iio2
import imageio.v3 as iio
import numpy as np
import torch
from tqdm.auto import tqdm

from gsvlib.data.io import DatasetError, read_rgb, write_png
from gsvlib.data.labels import LabelTable
from gsvlib.files import move_into_place, remove, write_json_atomic
from gsvlib.pictures import overlay
from gsvlib.segmenter import VideoSegmenter

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def read_frames(source: str | Path) -> tuple[Iterator[np.ndarray], float | None]:
    """(H, W, 3) uint8 frames of a video file or of the images of a folder (in natural name order), and the fps."""
    source = Path(source)
    if source.is_dir():
        files = sorted((p for p in source.iterdir() if p.suffix.lower() in FRAME_SUFFIXES), key=_natural_key)
        if not files:
            raise DatasetError(f"{source} holds no frames ({', '.join(FRAME_SUFFIXES)} files)")
        return (read_rgb(p) for p in files), None
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: give a video file or a folder of frames")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise DatasetError(f"{source} is not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames")
    try:
        fps = iio.immeta(source, plugin="FFMPEG").get("fps")
        frames = iio.imiter(source, plugin="FFMPEG")
        first = next(frames)
    except Exception as e:  # imageio raises several types for undecodable files
        raise DatasetError(f"{source} could not be decoded as a video ({type(e).__name__}: {e})") from e

    def chain():
        yield np.asarray(first)[..., :3]
        for f in frames:
            yield np.asarray(f)[..., :3]

    return chain(), fps


def segment_video(segmenter: VideoSegmenter, source, out: str | Path, table: LabelTable, alpha: float = 0.5,
                  max_frames: int | None = None, progress: bool = True) -> dict:
    """Segment every frame of ``source``; write colour overlays to ``out`` (a folder of PNGs, or an .mp4 file) and
    per-frame timings to ``<out>.timings.json`` (mp4) or ``out/timings.json`` (folder)."""
    frames, fps = read_frames(source)
    out = Path(out)
    as_mp4 = out.suffix.lower() == ".mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    # Everything is written beside ``out`` first and moved into place at the end: a run that fails part way leaves an
    # earlier result at ``out`` as it was.
    partial = out.parent / (f".{out.stem}.partial{out.suffix}" if as_mp4 else f".{out.name}.partial")
    remove(partial)  # left by a run that was killed
    writer = None
    if as_mp4:
        writer = iio2.get_writer(partial, fps=fps or 15, macro_block_size=1)
    timings = []
    segmenter.reset()
    try:
        try:
            for i, frame in enumerate(tqdm(frames, desc="segmenting", disable=not progress, unit="frame")):
                if max_frames is not None and i >= max_frames:
                    break
                t0 = time.perf_counter()
                step = segmenter.step(torch.tensor(frame).permute(2, 0, 1), labels=True)  # a writable copy
                ms = (time.perf_counter() - t0) * 1000
                timings.append({"frame": i, "keyframe": step.is_keyframe, "ms": round(ms, 2)})
                picture = overlay(frame, step.labels[0].cpu().numpy(), table, alpha)
                if writer is not None:
                    writer.append_data(picture)
                else:
                    write_png(partial / f"{i:06d}.png", picture)
        finally:
            if writer is not None:
                writer.close()
        if not timings:
            raise DatasetError(f"{source} holds no frames")
    except BaseException:
        remove(partial)
        raise
    key = [t["ms"] for t in timings if t["keyframe"]]
    nonkey = [t["ms"] for t in timings if not t["keyframe"]]
    summary = {"frames": len(timings), "keyframe_ms_mean": round(float(np.mean(key)), 2),
               "non_keyframe_ms_mean": round(float(np.mean(nonkey)), 2) if nonkey else None,
               "fps": round(1000 * len(timings) / sum(t["ms"] for t in timings), 2), "per_frame": timings}
    if not as_mp4:
        write_json_atomic(partial / "timings.json", summary)
    move_into_place(partial, out)
    if as_mp4:
        write_json_atomic(out.with_suffix(".timings.json"), summary)
    return summary

