"""Stills set in motion: a labelled image becomes a short clip whose last frame is the image, with exact labels, flow
and visibility at every frame; :class:`StillsInMotion` sets every labelled frame of a dataset of the registry in motion
(``gsv train --stills``).

The still's depth is guessed from its labels (:func:`depth_proxy`): the ground below the horizon lies on a plane the
camera sees from ``height`` metres, the sky is far, and every other pixel stands at the depth of the ground where its
column of that object meets the ground. The clip's earlier frames are seen from camera poses behind the still's
(:class:`Motion`: forward motion with parallax, a pan and a roll per frame). Each frame is the still's pixels projected
into that pose, the nearest winning where several land on one pixel (a z-buffer): what a frame sees that the still
does not (beyond its border, or behind something) is marked as such, its label IGNORE, never an invented class.

Every frame t < T-1 carries the exact flow to frame t+1 (the motion of the scene point it shows) and where that flow
is valid (the point is seen in frame t+1 too).

The default motion was tuned against real footage: on 8 CamVid train stills (every 40th, 480x360) the valid flow of
the rendered clips has median 7.9 px and 95th percentile 23.6 px per frame; the committed weights' flow net reads 7.5
and 22.4 px (full resolution) on the 50 frame pairs of CamVid's 15 Hz run: within a factor of 1.06.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from gsvlib.data.io import write_png
from gsvlib.data.labels import IGNORE, LabelTable
from gsvlib.data.snippets import SnippetDataset, frames_to_tensor
from gsvlib.data.synthetic import CITY, snippet_stem
from gsvlib.files import move_into_place, output_path, refuse_foreign, remove, restore_interrupted, write_json_atomic
from gsvlib.progress import progress_bar

GROUND = ("road", "sidewalk", "terrain", "pavement", "roadmarking", "parking", "rail track")  # on the ground plane
SKY = ("sky",)
FAR = 1e3  # metres: the depth of the sky, and the cap of every other depth


@dataclass(frozen=True)
class Motion:
    """The camera motion that sets a still in motion: per frame, ``forward`` metres ahead, ``pan`` degrees of yaw and
    ``roll`` degrees of roll (signs drawn per clip), ``frames`` frames in all (the last one is the still), seen by a
    camera ``height`` metres above the ground with a horizontal field of view of ``fov`` degrees."""

    frames: int = 5
    forward: float = 0.6
    pan: float = 1.0
    roll: float = 0.1
    height: float = 1.5
    fov: float = 60.0

    def __post_init__(self):
        if self.frames < 2:
            raise ValueError(f"a clip needs at least 2 frames (the still and one before it), got {self.frames}")
        if not (0 < self.fov < 180 and self.height > 0):
            raise ValueError(f"fov must be in (0, 180) degrees and height > 0, got {self.fov} and {self.height}")


def focal(width: int, fov: float) -> float:
    """The focal length in pixels of a ``width``-pixel image with a horizontal field of view of ``fov`` degrees."""
    return width / 2 / math.tan(math.radians(fov) / 2)


def depth_proxy(label: np.ndarray, table: LabelTable, height: float = 1.5, fov: float = 60.0,
                horizon: float | None = None) -> np.ndarray:
    """(H, W) metres in front of the camera for each pixel of the labelled still ``label`` (H, W): the ground plane
    below the horizon (row ``horizon``, default: the highest ground pixel's row, at least 1 above it), the sky and the
    rows above the horizon at :data:`FAR`, every other pixel at the depth of the ground where its run of non-ground
    pixels in its column ends below (the bottom row's ground depth where the column never reaches the ground)."""
    h, w = label.shape
    f = focal(w, fov)
    ground = np.isin(label, [table.classes.index(c) for c in GROUND if c in table.classes])
    sky = np.isin(label, [table.classes.index(c) for c in SKY if c in table.classes])
    if horizon is None:
        rows = np.flatnonzero(ground.any(1))
        horizon = (rows[0] - 1) if rows.size else h / 2
    y = np.arange(h, dtype=np.float64)
    plane = np.where(y > horizon, f * height / np.maximum(y - horizon, 1e-6), FAR)  # (H,) depth of the ground row
    depth = np.empty((h, w))
    contact = np.full(w, plane[-1])  # walking up each column: the ground depth where the current object stands
    for row in range(h - 1, -1, -1):
        contact = np.where(ground[row], plane[row], contact)
        depth[row] = contact
    depth[sky] = FAR
    return np.minimum(depth, FAR)


def _rotation(yaw: float, roll: float) -> np.ndarray:
    """The camera rotation of ``yaw`` (about the vertical axis) then ``roll`` (about the viewing axis), radians."""
    cy, sy, cr, sr = math.cos(yaw), math.sin(yaw), math.cos(roll), math.sin(roll)
    yaw_m = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    roll_m = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return roll_m @ yaw_m


def poses(motion: Motion, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(R, t) per frame, oldest first, mapping the still's camera coordinates to the frame's: x_t = R X + t. The last
    is the identity; frame T-1-k sits k steps back along the path (the camera drove forward onto the still)."""
    pan = math.radians(motion.pan) * rng.choice((-1, 1))
    roll = math.radians(motion.roll) * rng.choice((-1, 1))
    out = []
    for t in range(motion.frames):
        k = motion.frames - 1 - t  # steps before the still
        rot = _rotation(-k * pan, -k * roll)
        out.append((rot, rot @ np.array([0.0, 0.0, k * motion.forward])))  # the camera was k * forward behind
    return out


def _project(points: np.ndarray, rot: np.ndarray, shift: np.ndarray, f: float, w: int, h: int):
    """Pixel coordinates (N, 2) and depths (N,) of the still's points (N, 3) seen from the pose (rot, shift)."""
    cam = points @ rot.T + shift
    z = cam[:, 2]
    safe = np.where(z > 1e-3, z, np.nan)
    return np.stack([f * cam[:, 0] / safe + (w - 1) / 2, f * cam[:, 1] / safe + (h - 1) / 2], 1), z


def _pixels(xy: np.ndarray) -> np.ndarray:
    """(N, 2) projected coordinates rounded to pixels; a point behind the camera (NaN) lands off the image."""
    return np.round(np.nan_to_num(xy, nan=-1.0)).astype(np.int64)


def _on_image(px: np.ndarray, w: int, h: int) -> np.ndarray:
    """(N,) whether each pixel (N, 2) x, y lies on a ``w`` x ``h`` image."""
    return (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)


def render_clip(image: np.ndarray, label: np.ndarray, depth: np.ndarray, motion: Motion = Motion(),
                seed: int = 0, flow: bool = True) -> dict:
    """The still ``image`` (H, W, 3) uint8 with labels ``label`` (H, W) and depth ``depth`` (H, W, metres) set in
    motion: {"frames": (T, H, W, 3) uint8, "labels": (T, H, W) uint8 (IGNORE where the frame sees what the still does
    not), "seen": (T, H, W) bool (the pixel shows a point of the still), "flow": (T-1, 2, H, W) float32 (x, y pixels to
    frame t+1), "valid": (T-1, H, W) bool (the point is seen in frame t+1 too), "back_flow" (T-1, 2, H, W) and
    "back_valid" (T-1, H, W): the same from frame t+1 back to frame t (what the model warps with, and what the synthetic
    set stores)}; the last frame is the still itself; ``flow=False`` leaves the flows out (training needs only the
    frames). Unseen pixels take the colour of the nearest seen pixel in their row (a plain fill, never a label)."""
    h, w = label.shape
    if image.shape[:2] != (h, w) or depth.shape != (h, w):
        raise ValueError(f"image {image.shape[:2]}, labels {label.shape} and depth {depth.shape} must be one size")
    f = focal(w, motion.fov)
    v, u = np.mgrid[0:h, 0:w]
    z = depth.reshape(-1)
    points = np.stack([(u.reshape(-1) - (w - 1) / 2) * z / f, (v.reshape(-1) - (h - 1) / 2) * z / f, z], 1)
    path = poses(motion, np.random.default_rng(seed))
    frames, labels, seen, owners = [], [], [], []
    for rot, shift in path:
        xy, zt = _project(points, rot, shift, f, w, h)
        px = _pixels(xy)
        inside = _on_image(px, w, h) & (zt > 1e-3)
        index = np.flatnonzero(inside)
        index = index[np.argsort(-zt[index], kind="stable")]  # far first: the nearest point written last wins
        owner = np.full(h * w, -1, np.int64)
        owner[px[index, 1] * w + px[index, 0]] = index
        hit = owner >= 0
        frame = np.zeros((h * w, 3), np.uint8)
        frame[hit] = image.reshape(-1, 3)[owner[hit]]
        lab = np.full(h * w, IGNORE, np.uint8)
        lab[hit] = label.reshape(-1)[owner[hit]]
        frames.append(_fill_rows(frame.reshape(h, w, 3), hit.reshape(h, w)))
        labels.append(lab.reshape(h, w))
        seen.append(hit.reshape(h, w))
        owners.append(owner)
    clip = {"frames": np.stack(frames), "labels": np.stack(labels), "seen": np.stack(seen)}
    if not flow:
        return clip
    ahead = [_motion(points, owners[t], owners[t + 1], path[t + 1], f, w, h) for t in range(motion.frames - 1)]
    back = [_motion(points, owners[t + 1], owners[t], path[t], f, w, h) for t in range(motion.frames - 1)]
    return {**clip, "flow": np.stack([m for m, _ in ahead]), "valid": np.stack([v for _, v in ahead]),
            "back_flow": np.stack([m for m, _ in back]), "back_valid": np.stack([v for _, v in back])}


def _motion(points: np.ndarray, owner: np.ndarray, owner_to: np.ndarray, pose_to: tuple, f: float, w: int,
            h: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel's point (``owner``: the point each pixel of a frame shows, -1 for none) lands in the frame of
    pose ``pose_to`` whose pixels show ``owner_to``: the move (2, H, W) float32 in pixels (x, y), and whether the
    point is seen there (H, W) bool: the pixel it lands on shows the same point."""
    hit = owner >= 0
    here = np.stack([np.arange(h * w) % w, np.arange(h * w) // w], 1).astype(np.float64)  # (H*W, 2) x, y
    there, _ = _project(points[np.where(hit, owner, 0)], *pose_to, f, w, h)
    move = np.where(hit[:, None] & np.isfinite(there), there - here, 0.0)
    target = _pixels(there)
    inside = hit & _on_image(target, w, h)
    same = np.zeros(h * w, bool)
    same[inside] = owner_to[target[inside, 1] * w + target[inside, 0]] == owner[inside]
    return move.T.reshape(2, h, w).astype(np.float32), same.reshape(h, w)


def _fill_rows(frame: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """``frame`` with each unseen pixel given the colour of the nearest seen pixel to its left (else right) in its
    row; a row with none stays black."""
    w = frame.shape[1]
    cols = np.arange(w)
    left = np.maximum.accumulate(np.where(hit, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(hit, cols, w)[:, ::-1], axis=1)[:, ::-1]
    source = np.where(left >= 0, left, np.where(right < w, right, cols))
    return np.take_along_axis(frame, source[..., None].repeat(3, 2), 1)


class StillsInMotion(SnippetDataset):
    """``base`` (any dataset of the registry, opened with offset 0: every labelled frame) with each labelled frame set
    in motion: ``sample(index, offset)`` is the labelled frame and the ``offset`` frames rendered before it, whatever
    frames the base holds before it. Each still has one clip of ``max_offset + 1`` frames (:func:`render_clip` under
    ``motion``, drawn from (``seed``, index): the same still is the same clip in every run); a sample of offset k is
    its last k + 1 frames. Clips are kept in memory up to ``cache_bytes`` (a still is drawn many times in a run and
    rendering costs about 0.2 s at 480x360). The last frame and its label are the base's own; the frames before it are
    inputs only (the propagation is scored on the labelled frame)."""

    def __init__(self, base: SnippetDataset, max_offset: int = 4, motion: Motion = Motion(), seed: int = 0,
                 cache_bytes: int = 2 << 30):
        self.base, self.motion, self.seed = base, replace(motion, frames=max_offset + 1), seed
        self.table, self.items = base.table, base.items
        self.offset, self.max_offset, self.transform = None, max_offset, base.transform
        self.cache_bytes, self._clips = cache_bytes, {}

    def map_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return self.base.map_labels(raw, path)

    def render(self, index: int, flow: bool = True, still: dict | None = None) -> dict:
        """Still ``index`` set in motion: :func:`render_clip` of its labelled frame, ``max_offset + 1`` frames
        (``still``: the base's sample of it, where already read)."""
        still = self.base.sample(index, 0) if still is None else still  # the labelled frame, read and checked
        image = still["frames"][0].permute(1, 2, 0).mul(255).round().byte().numpy()  # (H, W, 3) uint8, as read
        label = still["label"].numpy().astype(np.uint8)
        seed = int(np.random.SeedSequence((self.seed, index)).generate_state(1)[0])
        depth = depth_proxy(label, self.table, self.motion.height, self.motion.fov)
        return render_clip(image, label, depth, self.motion, seed, flow=flow)

    def clip(self, index: int, still: dict | None = None) -> np.ndarray:
        """(max_offset + 1, H, W, 3) uint8: the frames of still ``index`` set in motion, the still last (``still``:
        the base's sample of it, where already read)."""
        if index not in self._clips:
            frames = self.render(index, flow=False, still=still)["frames"]
            if frames.nbytes * (len(self._clips) + 1) > self.cache_bytes:
                return frames
            self._clips[index] = frames
        return self._clips[index]

    def sample(self, index: int, offset: int) -> dict:
        if not 0 <= offset <= self.max_offset:
            raise ValueError(f"offset must be in 0..{self.max_offset} (the clips' frames before the still), got {offset}")
        read = self.base.sample(index, 0)
        still = {**read, "name": f"{read['name']} (set in motion)", "offset": offset}
        if offset == 0:
            return still
        return {**still, "frames": frames_to_tensor(list(self.clip(index, read)[-offset - 1:]))}


class WithStills(SnippetDataset):
    """The clips of ``video`` and the stills set in motion of ``stills`` (a :class:`StillsInMotion`), interleaved:
    even indices draw from the video, odd ones from the stills, so each makes half of a run's samples however many
    labelled frames each holds (28 labelled 15 Hz frames would otherwise be 7 % beside CamVid's 367 stills)."""

    def __init__(self, video: SnippetDataset, stills: StillsInMotion):
        if video.table is not stills.table:
            raise ValueError("the video and the stills must share one label table (one dataset of the registry)")
        self.video, self.stills = video, stills
        self.table, self.items = video.table, video.items + stills.items
        self.offset, self.max_offset, self.transform = None, min(video.max_offset, stills.max_offset), None

    def map_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return self.video.map_labels(raw, path)

    def __len__(self) -> int:
        return 2 * max(len(self.video), len(self.stills))

    def sample(self, index: int, offset: int) -> dict:
        source = self.stills if index % 2 else self.video
        return source.sample(index // 2 % len(source), offset)


def _written(path: Path) -> bool:
    """Whether ``path`` (relative to a folder of written clips) is a file :func:`write_clips` writes."""
    return path == Path("meta.json") or (path.parts[0] in ("leftImg8bit_sequence", "analysis")
                                         and path.suffix in (".png", ".npy"))


def write_clips(data: StillsInMotion, out: str | Path, split: str, count: int | None = None,
                progress: bool = True) -> dict:
    """Write the first ``count`` stills of ``data`` (default all) set in motion under ``out``, for inspection, in the
    synthetic set's layout (:func:`gsvlib.data.synthetic.load_snippet` reads clip k of ``split``):
    leftImg8bit_sequence/<split>/synth/synth_<k>_<t>_leftImg8bit.png per frame, and per clip under analysis/<split>/
    labels (T, H, W) uint8 (the dataset's classes; 255 where the frame shows what the still does not, and the
    dataset's own void), flow (T, H, W, 2) float16 backward to the previous frame and valid (T, H, W) bool (frame 0:
    none); meta.json last, with the source of each clip. A folder holding other files is refused; the clips are
    written beside ``out`` and moved into place, so an interrupted run leaves what was there. Returns the metadata."""
    count = len(data) if count is None else count
    if not 1 <= count <= len(data):
        raise ValueError(f"count must be in 1..{len(data)} (the stills {split}/ holds), got {count}")
    final = output_path(Path(out))
    restore_interrupted(final)
    refuse_foreign(final, _written, "gsv data stills")
    work = final.parent / f".{final.name}.partial"
    remove(work)
    meta = {"split": split, "clips": count, "frames": data.max_offset + 1, "seed": data.seed,
            "motion": {k: v for k, v in data.motion.__dict__.items() if k != "frames"},
            "classes": list(data.table.classes), "sources": []}
    try:
        for k in progress_bar(range(count), desc="setting stills in motion", disable=not progress):
            clip = data.render(k)
            for t, frame in enumerate(clip["frames"]):
                write_png(work / "leftImg8bit_sequence" / split / CITY / f"{snippet_stem(k, t)}_leftImg8bit.png", frame)
            flow = np.zeros((len(clip["frames"]), *clip["labels"].shape[1:], 2), np.float16)  # (T, H, W, 2)
            flow[1:] = clip["back_flow"].transpose(0, 2, 3, 1)
            valid = np.concatenate([np.zeros_like(clip["back_valid"][:1]), clip["back_valid"]])
            folder = work / "analysis" / split
            folder.mkdir(parents=True, exist_ok=True)
            for name, array in (("labels", clip["labels"]), ("flow", flow), ("valid", valid)):
                np.save(folder / f"{CITY}_{k:06d}_{name}.npy", array)
            meta["sources"].append(data.items[k].name)
        write_json_atomic(work / "meta.json", meta)
    except BaseException:
        remove(work)
        raise
    move_into_place(work, final)
    return meta
