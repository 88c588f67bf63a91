"""A procedural street video with exact labels and flow, so every notebook, test and the main job runs anywhere.

Each snippet is a small 3-D world ray-cast per pixel with a z-buffer: a ground plane (road with lane marks, sidewalks,
terrain), building facades with windows, trees, poles with signs, cars and pedestrians as upright cut-out shapes, and
a textured sky. The camera drives forward while turning (yaw and lateral sway), cars and pedestrians move on their
own, so objects occlude and dis-occlude each other. Because every pixel's 3-D point is known, the backward flow to the
previous frame is exact: the point, moved back by its object's velocity, projected into the previous camera.

:func:`generate` writes the Cityscapes sequence layout (:mod:`gsvlib.data.cityscapes` reads it), 30-frame snippets
with the 20th frame annotated, plus every frame's trainId labels, flow and validity as .npy under ``analysis/``.
Unlike Cityscapes, training snippets get a gtFine file for every frame by default (more labelled frames for the short
CPU training runs); validation snippets keep the single annotated frame, so the protocol is the paper's.
:class:`SyntheticStreet` is the Cityscapes reader with one addition: its whole videos (``videos()``) hold all frames
of a snippet, each scored with its exact labels.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from gsvlib.data.cityscapes import CityscapesSequences
from gsvlib.data.io import DatasetError, read_rgb, write_png
from gsvlib.data.labels import CAMVID, CITYSCAPES, CITYSCAPES_TO_CAMVID, CITYSCAPES_TRAINID_TO_ID, IGNORE
from gsvlib.data.snippets import Video, frames_to_tensor
from gsvlib.files import move_into_place, output_path, refuse_foreign, remove, restore_interrupted, write_json_atomic
from gsvlib.progress import progress_bar

FPS = 17.0  # Cityscapes' frame rate
CITY = "synth"
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = 0, 1, 2, 5, 7, 8, 9, 10, 11, 13
SKY_RGB = np.array([0.62, 0.74, 0.90])
FORMAT_VERSION = 1
SET_ENTRIES = ("leftImg8bit_sequence", "gtFine", "analysis", "meta.json")  # what a generated set holds


def _in_set(path: Path) -> bool:
    """Whether ``path`` (relative to the set's folder) is a file a generated set holds: its metadata, or a PNG or NPY
    under one of its folders."""
    return path == Path("meta.json") or (path.parts[0] in SET_ENTRIES and path.suffix in (".png", ".npy"))


def _hash(*coords: np.ndarray) -> np.ndarray:
    """Deterministic value noise in [0, 1) on integer lattice coordinates."""
    h = np.zeros_like(coords[0], dtype=np.float64)
    for k, c in zip((12.9898, 78.233, 37.719), coords):
        h = h + np.floor(c) * k
    return np.modf(np.abs(np.sin(h) * 43758.5453))[0]


@dataclass
class Quad:
    """An upright planar rectangle: centre at t=0, horizontal unit axis ``a`` (vertical axis is world up), half
    sizes, class, base colour, a shape inside the rectangle, and a constant velocity (m/s)."""
    centre: np.ndarray
    a: np.ndarray
    half_w: float
    half_h: float
    cls: int
    rgb: np.ndarray
    shape: str = "rect"  # rect, facade, tree, car, person
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def normal(self) -> np.ndarray:
        return np.cross(self.a, np.array([0.0, 1.0, 0.0]))


@dataclass
class Camera:
    pos: np.ndarray  # world position, Y up
    yaw: float  # rotation about Y; 0 looks along +Z
    f: float
    cx: float
    cy: float

    def rotation(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])

    def rays(self, h: int, w: int) -> np.ndarray:
        """(H, W, 3) world ray directions whose camera-space depth component is 1 (so ray length s = depth)."""
        v, u = np.mgrid[0:h, 0:w].astype(np.float64)
        d = np.stack(((u - self.cx) / self.f, -(v - self.cy) / self.f, np.ones_like(u)), -1)
        return d @ self.rotation().T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World points (..., 3) -> pixel u, v and camera depth z."""
        pc = (points - self.pos) @ self.rotation()
        z = pc[..., 2]
        zs = np.where(np.abs(z) < 1e-9, 1e-9, z)
        return self.cx + self.f * pc[..., 0] / zs, self.cy - self.f * pc[..., 1] / zs, z


class StreetWorld:
    """One snippet's world and camera path, drawn from ``rng``."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int]):
        h, w = size
        self.size = size
        self.f = 0.6 * w  # ~80 degree horizontal field of view
        self.speed = rng.uniform(5.0, 10.0)
        self.yaw_amp = rng.uniform(0.03, 0.09)
        self.yaw_period = rng.uniform(2.0, 4.0)
        self.yaw_phase = rng.uniform(0, 6.3)
        self.sway = rng.uniform(0.2, 0.8)
        self.road_half = rng.uniform(3.2, 4.2)
        self.walk_edge = self.road_half + rng.uniform(2.0, 3.5)
        self.quads: list[Quad] = []
        self._populate(rng)

    def camera(self, t: float) -> Camera:
        phase = 2 * np.pi * t / self.yaw_period + self.yaw_phase
        pos = np.array([self.road_half / 2 + self.sway * np.sin(phase), 1.5, self.speed * t])  # right-hand lane
        h, w = self.size
        return Camera(pos, self.yaw_amp * np.cos(phase), self.f, (w - 1) / 2, (h - 1) / 2 - 0.05 * h)

    def _populate(self, rng: np.random.Generator) -> None:
        up_to = 40 + 2.5 * self.speed * 2 + 110  # beyond the last frame's view
        for side in (-1, 1):
            z = rng.uniform(-30, -10)
            while z < up_to:  # buildings, with gaps holding trees
                length = rng.uniform(8, 22)
                if rng.random() < 0.8:
                    height = rng.uniform(7, 24)
                    x = side * (self.walk_edge + rng.uniform(0.5, 4.0))
                    rgb = rng.uniform(0.3, 0.75, 3) * np.array([1.0, 0.95, 0.9])
                    self.quads.append(Quad(np.array([x, height / 2, z + length / 2]), np.array([0.0, 0.0, 1.0]),
                                           length / 2, height / 2, BUILDING, rgb, "facade"))
                else:
                    for zt in np.arange(z + 2, z + length, rng.uniform(4, 7)):
                        self._tree(rng, side * (self.walk_edge + rng.uniform(1, 4)), zt)
                z += length + rng.uniform(0.0, 5.0)
            for zp in np.arange(rng.uniform(0, 15), up_to, rng.uniform(14, 26)):  # poles, some with signs
                x = side * (self.road_half + 0.6)
                self.quads.append(Quad(np.array([x, 2.75, zp]), np.array([1.0, 0, 0]), 0.09, 2.75, POLE,
                                       np.array([0.45, 0.45, 0.47])))
                if rng.random() < 0.6:
                    rgb = [np.array([0.9, 0.8, 0.1]), np.array([0.1, 0.3, 0.8]), np.array([0.8, 0.1, 0.1])][rng.integers(3)]
                    self.quads.append(Quad(np.array([x - side * 0.1, 4.6, zp - 0.12]), np.array([1.0, 0, 0]), 0.35,
                                           0.35, SIGN, rgb))
            for zt in np.arange(rng.uniform(5, 20), up_to, rng.uniform(12, 25)):  # street trees on the sidewalk
                self._tree(rng, side * (self.walk_edge - 0.6), zt)
            for _ in range(rng.integers(2, 5)):  # pedestrians walking along the sidewalk
                x = side * rng.uniform(self.road_half + 1.0, self.walk_edge - 0.3)
                self.quads.append(Quad(np.array([x, 0.87, rng.uniform(5, 60)]), np.array([1.0, 0, 0]), 0.32, 0.87,
                                       PERSON, rng.uniform(0.1, 0.8, 3), "person",
                                       np.array([0, 0, rng.choice([-1, 1]) * rng.uniform(0.8, 1.8)])))
        for _ in range(rng.integers(3, 7)):  # cars: ahead in our lane, or oncoming in the other
            oncoming = rng.random() < 0.4
            x = (-1 if oncoming else 1) * self.road_half / 2 + rng.uniform(-0.3, 0.3)
            vz = -rng.uniform(5, 12) if oncoming else self.speed * rng.uniform(0.8, 1.05)
            self.quads.append(Quad(np.array([x, 0.75, rng.uniform(8, 50)]), np.array([1.0, 0, 0]), 0.95, 0.75, CAR,
                                   rng.uniform(0.05, 0.9, 3), "car", np.array([0, 0, vz])))
        if rng.random() < 0.5:  # someone crossing the road ahead
            self.quads.append(Quad(np.array([-self.road_half, 0.87, rng.uniform(15, 35)]), np.array([1.0, 0, 0]),
                                   0.32, 0.87, PERSON, rng.uniform(0.1, 0.8, 3), "person",
                                   np.array([rng.uniform(1.0, 1.6), 0, 0])))

    def _tree(self, rng: np.random.Generator, x: float, z: float) -> None:
        height = rng.uniform(4, 8)
        self.quads.append(Quad(np.array([x, height / 2, z]), np.array([1.0, 0, 0]), height * 0.3, height / 2,
                               VEGETATION, np.array([0.2, 0.45, 0.12]) * rng.uniform(0.7, 1.2), "tree"))

    # --- rendering -------------------------------------------------------------------------------------------------
    def _shape(self, q: Quad, al: np.ndarray, be: np.ndarray) -> np.ndarray:
        """Inside mask in the quad's local coordinates (alpha across, beta up, both from the centre)."""
        hw, hh = q.half_w, q.half_h
        if q.shape == "tree":
            canopy = (al / hw) ** 2 + ((be - hh * 0.35) / (hh * 0.65)) ** 2 < 1
            return canopy | ((np.abs(al) < 0.12 * hw + 0.05) & (be < 0))
        if q.shape == "car":
            body = be < 0.15 * hh
            cabin = (be >= 0.15 * hh) & (np.abs(al) < hw * (0.75 - 0.35 * (be - 0.15 * hh) / (0.85 * hh)))
            return body | cabin
        if q.shape == "person":
            head = (al / (0.3 * hw)) ** 2 + ((be - 0.86 * hh) / (0.14 * hh)) ** 2 < 1
            torso = (np.abs(al) < 0.75 * hw) & (be > -0.05 * hh) & (be < 0.72 * hh)
            legs = (be <= -0.05 * hh) & (np.abs(np.abs(al) - 0.3 * hw) < 0.22 * hw)
            return head | torso | legs
        return np.ones(al.shape, bool)

    def _texture(self, q: Quad, al: np.ndarray, be: np.ndarray) -> np.ndarray:
        n = _hash(al * 4, be * 4)[..., None]
        rgb = q.rgb * (0.85 + 0.3 * n)
        if q.shape == "facade":  # windows on a grid, the ground floor darker
            win = ((al + 100) % 3.0 > 0.9) & ((al + 100) % 3.0 < 2.1) & ((be + q.half_h) % 3.2 > 1.0) & \
                  ((be + q.half_h) % 3.2 < 2.4) & (be + q.half_h > 3.2)
            rgb = np.where(win[..., None], np.array([0.18, 0.22, 0.3]) * (0.8 + 0.5 * n), rgb)
            rgb = rgb * (0.8 if q.centre[0] < 0 else 1.0)
        elif q.shape == "car":
            glass = be > 0.2 * q.half_h
            wheels = (be < -0.6 * q.half_h) & (np.abs(np.abs(al) - 0.6 * q.half_w) < 0.2 * q.half_w)
            rgb = np.where(glass[..., None], np.array([0.15, 0.2, 0.25]), rgb)
            rgb = np.where(wheels[..., None], np.array([0.05, 0.05, 0.05]), rgb)
        elif q.shape == "tree":
            rgb = np.where((be < 0)[..., None] & (np.abs(al) < 0.12 * q.half_w + 0.05)[..., None],
                           np.array([0.35, 0.25, 0.15]), q.rgb * (0.6 + 0.8 * _hash(al * 6, be * 6)[..., None]))
        return rgb

    def _ground(self, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ax = np.abs(x)
        cls = np.where(ax < self.road_half, ROAD, np.where(ax < self.walk_edge, SIDEWALK, TERRAIN))
        n = _hash(x * 5, z * 5)[..., None]
        road = np.array([0.33, 0.32, 0.34]) * (0.8 + 0.4 * n)
        marks = ((np.abs(x) < 0.08) & ((z % 8.0) < 4.0)) | (np.abs(ax - (self.road_half - 0.25)) < 0.07)
        road = np.where(marks[..., None], np.array([0.9, 0.9, 0.88]), road)
        tiles = ((x % 1.0) < 0.05) | ((z % 1.0) < 0.05)
        walk = np.where(tiles[..., None], 0.45, 0.68) * np.array([1.0, 0.97, 0.95]) * (0.9 + 0.2 * n)
        grass = np.array([0.35, 0.5, 0.25]) * (0.7 + 0.6 * _hash(x * 3, z * 3)[..., None])
        rgb = np.where((cls == ROAD)[..., None], road, np.where((cls == SIDEWALK)[..., None], walk, grass))
        return cls, rgb

    def render(self, t: float) -> dict[str, np.ndarray]:
        """Frame at time t: rgb (H, W, 3) uint8, labels (H, W) uint8 trainIds, depth (H, W), world points (H, W, 3)
        and their velocities (H, W, 3); sky pixels have infinite depth."""
        h, w = self.size
        cam = self.camera(t)
        d = cam.rays(h, w)
        depth = np.full((h, w), np.inf)
        labels = np.full((h, w), SKY, np.uint8)
        # sky: texture fixed to the direction, so its flow is the camera rotation alone
        az, el = np.arctan2(d[..., 0], d[..., 2]), np.arctan2(d[..., 1], np.hypot(d[..., 0], d[..., 2]))
        clouds = _hash(az * 12, el * 30) * 0.5 + _hash(az * 5, el * 12) * 0.5
        rgb = SKY_RGB * (1.05 - 0.4 * el[..., None]) * (0.9 + 0.15 * clouds[..., None])
        points = np.zeros((h, w, 3))
        vel = np.zeros((h, w, 3))
        down = d[..., 1] < -1e-6  # the ground plane Y = 0
        s = np.where(down, -cam.pos[1] / np.where(down, d[..., 1], -1), np.inf)
        hit = down & (s < 400)
        gp = cam.pos + s[hit][:, None] * d[hit]  # (N, 3) ground points
        labels[hit], rgb[hit] = self._ground(gp[:, 0], gp[:, 2])
        depth[hit], points[hit] = s[hit], gp
        for q in self.quads:
            centre = q.centre + q.velocity * t
            box = self._screen_box(cam, q, centre)
            if box is None:
                continue
            r0, r1, c0, c1 = box
            dd = d[r0:r1, c0:c1]
            n = q.normal()
            denom = dd @ n
            with np.errstate(divide="ignore", invalid="ignore"):
                sq = ((centre - cam.pos) @ n) / denom
            x = cam.pos + sq[..., None] * dd
            rel = x - centre
            al, be = rel @ q.a, rel[..., 1]
            inside = (np.abs(denom) > 1e-9) & (sq > 0.1) & (np.abs(al) <= q.half_w) & (np.abs(be) <= q.half_h)
            inside &= sq < depth[r0:r1, c0:c1]
            if not inside.any():
                continue
            inside[inside] = self._shape(q, al[inside], be[inside])
            win = (slice(r0, r1), slice(c0, c1))
            depth[win][inside] = sq[inside]
            labels[win][inside] = q.cls
            rgb[win][inside] = self._texture(q, al[inside], be[inside])
            points[win][inside] = x[inside]
            vel[win][inside] = q.velocity
        fog = (1 - np.exp(-np.where(np.isinf(depth), 0, depth) / 120.0))[..., None]
        rgb = np.where(np.isinf(depth)[..., None], rgb, rgb * (1 - fog) + SKY_RGB * fog)
        return {"rgb": (rgb.clip(0, 1) * 255).round().astype(np.uint8), "labels": labels, "depth": depth,
                "points": points, "velocity": vel, "rays": d}

    def _screen_box(self, cam: Camera, q: Quad, centre: np.ndarray):
        h, w = self.size
        corners = np.array([centre + sa * q.half_w * q.a + np.array([0, sb * q.half_h, 0])
                            for sa in (-1, 1) for sb in (-1, 1)])
        u, v, z = cam.project(corners)
        if (z < 0.1).all() or (z > 400).all():
            return None
        if (z < 0.1).any():
            return 0, h, 0, w  # straddles the camera plane: test every pixel
        r0, r1 = int(max(0, np.floor(v.min()))), int(min(h, np.ceil(v.max()) + 1))
        c0, c1 = int(max(0, np.floor(u.min()))), int(min(w, np.ceil(u.max()) + 1))
        return None if r0 >= r1 or c0 >= c1 else (r0, r1, c0, c1)

    def backward_flow(self, frame: dict, t: float, prev: dict | None, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Exact backward flow (H, W, 2) (x, y) to the frame at t - dt, and where it is valid (H, W) bool: the point
        lands inside the previous frame and is visible there (not dis-occluded)."""
        h, w = self.size
        cam0 = self.camera(t - dt)
        sky = np.isinf(frame["depth"])
        past = frame["points"] - frame["velocity"] * dt
        u, v, z = cam0.project(past)
        # sky: a direction, moved by the camera rotation only
        dc = frame["rays"] @ cam0.rotation()
        us = cam0.cx + cam0.f * dc[..., 0] / dc[..., 2]
        vs = cam0.cy - cam0.f * dc[..., 1] / dc[..., 2]
        u, v = np.where(sky, us, u), np.where(sky, vs, v)
        vv, uu = np.mgrid[0:h, 0:w]
        flow = np.stack((u - uu, v - vv), -1)
        valid = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
        if prev is None:
            return flow, np.zeros((h, w), bool)
        ui, vi = np.clip(np.round(u), 0, w - 1).astype(int), np.clip(np.round(v), 0, h - 1).astype(int)
        prev_depth = prev["depth"][vi, ui]
        seen = np.where(sky, np.isinf(prev_depth), np.abs(prev_depth - z) <= 0.03 * np.abs(z) + 0.05)
        return flow, valid & seen


def render_snippet(seed: int, index: int, size=(256, 512), frames: int = 30):
    """Yield (rgb, trainId labels, backward flow, valid) for each frame of snippet ``index`` of world ``seed``."""
    world = StreetWorld(np.random.default_rng([seed, index]), size)
    prev = None
    for k in range(frames):
        t = k / FPS
        frame = world.render(t)
        flow, valid = world.backward_flow(frame, t, prev, 1 / FPS)
        yield frame["rgb"], frame["labels"], flow, valid
        prev = frame


@dataclass(frozen=True)
class SynthConfig:
    snippets: int = 8  # training snippets
    val_snippets: int = 4
    size: tuple[int, int] = (256, 512)  # (H, W), multiples of 8
    frames: int = 30
    annotated: int = 19  # 0-based index of the annotated frame: the 20th, as in Cityscapes
    seed: int = 0
    label_all_train_frames: bool = True  # train/ gets a gtFine file for every frame (val/ only the annotated one)

    def check(self) -> None:
        h, w = self.size
        if h % 8 or w % 8 or h < 32 or w < 32:
            raise ValueError(f"size must be at least 32x32 with H and W divisible by 8, got {h}x{w}")
        if self.snippets < 1 or self.val_snippets < 0:
            raise ValueError(f"need snippets >= 1 and val_snippets >= 0, got {self.snippets}, {self.val_snippets}")
        if not 0 <= self.annotated < self.frames:
            raise ValueError(f"annotated frame {self.annotated} must lie in 0..{self.frames - 1}")


def snippet_stem(seq: int, frame: int) -> str:
    return f"{CITY}_{seq:06d}_{frame:06d}"


def generate(out: str | Path, config: SynthConfig = SynthConfig(), force: bool = False, progress: bool = True) -> dict:
    """Write the synthetic set under ``out`` in the Cityscapes sequence layout; returns the metadata.

    A folder that already holds a complete set with the same config is left as it is (``force`` regenerates).
    ``meta.json`` is written last, so an interrupted run is detected and redone.
    """
    config.check()
    out = output_path(Path(out))  # through a symlink: its target is replaced, the link stays
    meta_path = out / "meta.json"
    meta = {"format": FORMAT_VERSION, **{k: list(v) if isinstance(v, tuple) else v for k, v in config.__dict__.items()}}
    restore_interrupted(out)  # a set moved aside by a run killed while replacing it
    if meta_path.is_file() and not force:
        old = json.loads(meta_path.read_text())
        if {k: v for k, v in old.items() if k in meta} == meta:
            return old
        raise DatasetError(f"{out} already holds a synthetic set made with other settings ({meta_path}); pass "
                           "--force to replace it or choose another --out")
    refuse_foreign(out, _in_set, "gsv data synth")
    # The set is written beside ``out`` and moved into place at the end: an interrupted run leaves the old set as it
    # was, and a regenerated set holds exactly the requested snippets (no files of a larger old set stay behind).
    final, out = out, out.parent / f".{out.name}.partial"
    remove(out)
    try:
        meta = _render_set(out, config, meta, progress)
    except BaseException:
        remove(out)  # a run interrupted or failed part way leaves nothing beside the set
        raise
    move_into_place(out, final)
    return meta


def _render_set(out: Path, config: SynthConfig, meta: dict, progress: bool) -> dict:
    """Render every snippet of ``config`` into the folder ``out``; returns ``meta`` completed, written last."""
    start = time.perf_counter()
    table = np.full(256, 0, np.uint8)
    for train_id, label_id in CITYSCAPES_TRAINID_TO_ID.items():
        table[train_id] = label_id
    jobs = [("train", i) for i in range(config.snippets)] + [("val", config.snippets + i)
                                                              for i in range(config.val_snippets)]
    bar = progress_bar(total=len(jobs) * config.frames, desc="rendering synthetic street video", disable=not progress)
    for split, seq in jobs:
        img_dir = out / "leftImg8bit_sequence" / split / CITY
        all_labels, all_flow, all_valid = [], [], []
        for k, (rgb, labels, flow, valid) in enumerate(render_snippet(config.seed, seq, config.size, config.frames)):
            write_png(img_dir / f"{snippet_stem(seq, k)}_leftImg8bit.png", rgb)
            if k == config.annotated or (split == "train" and config.label_all_train_frames):
                write_png(out / "gtFine" / split / CITY / f"{snippet_stem(seq, k)}_gtFine_labelIds.png", table[labels])
            all_labels.append(labels)
            all_flow.append(flow.astype(np.float16))
            all_valid.append(valid)
            bar.update()
        ana = out / "analysis" / split
        ana.mkdir(parents=True, exist_ok=True)
        for name, arr in (("labels", all_labels), ("flow", all_flow), ("valid", all_valid)):
            np.save(ana / f"{CITY}_{seq:06d}_{name}.npy", np.stack(arr))
    bar.close()
    meta["seconds"] = round(time.perf_counter() - start, 1)
    meta["classes_present"] = [CITYSCAPES.classes[c] for c in (ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION,
                                                              TERRAIN, SKY, PERSON, CAR)]
    write_json_atomic(out / "meta.json", meta)
    return meta


def load_analysis(root: str | Path, split: str, seq: int) -> dict[str, np.ndarray]:
    """Every frame's ground truth of one snippet: labels (T, H, W) uint8 trainIds, flow (T, H, W, 2) float32 (x, y)
    backward to the previous frame, valid (T, H, W) bool (frame 0 has no previous frame: all False)."""
    arrays = {name: analysis_array(root, split, seq, name) for name in ("labels", "flow", "valid")}
    out = {name: np.array(a) for name, a in arrays.items()}  # read into memory
    out["flow"] = out["flow"].astype(np.float32)
    return out


def analysis_array(root: str | Path, split: str, seq: int, name: str) -> np.ndarray:
    """One stored ground truth ("labels", "flow" or "valid") of every frame of one snippet, memory-mapped: frames are
    read as used."""
    path = Path(root) / "analysis" / split / f"{CITY}_{seq:06d}_{name}.npy"
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; generate the set with `gsv data synth --out {root}`")
    return np.load(path, mmap_mode="r")


def scored_labels(labels: np.ndarray) -> np.ndarray:
    """Stored trainIds as they are scored: values outside the 19 classes become the ignore label 255."""
    return np.where(labels < CITYSCAPES.num_classes, labels, IGNORE).astype(np.uint8)


def _frame_labels(root: Path, split: str, seq: int, k: int) -> np.ndarray:
    return scored_labels(np.asarray(analysis_array(root, split, seq, "labels")[k]))


def generate_if_missing(out: str | Path, progress: bool = True) -> None:
    """The default synthetic set in ``out`` unless a complete set (of any settings) is there already."""
    if not (Path(out) / "meta.json").is_file():
        generate(out, progress=progress)


class SyntheticStreet(CityscapesSequences):
    """The synthetic set through the Cityscapes reader; ``videos()`` are whole snippets with every frame labelled."""

    default_root = "data/synthetic"
    generate = staticmethod(generate_if_missing)  # a built-in set: `gsv run` makes it where it is missing

    def __init__(self, root: str | Path, split: str = "val", *args, **kwargs):
        super().__init__(root, split, *args, **kwargs)
        self.split = split

    def exact_flow(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact backward flow of snippet ``index``'s labelled frame to the frame before it, (2, H, W) float32 in
        pixels (x, y), and where it is valid, (H, W) bool: seen in both frames (dis-occlusions are not)."""
        _, seq, k = self.items[index].name.split("_")  # synth_<seq>_<frame>
        flow, valid = (analysis_array(self.root, self.split, int(seq), name)[int(k)] for name in ("flow", "valid"))
        return (torch.from_numpy(np.array(flow, dtype=np.float32)).permute(2, 0, 1),
                torch.from_numpy(np.array(valid, dtype=bool)))

    def videos(self) -> list[Video]:
        out = []
        for video in super().videos():
            seq = int(video.frames[0].name.split("_")[1])  # synth_<seq>_<frame>_leftImg8bit.png
            frames = tuple(sorted(video.frames[0].parent.glob(f"{CITY}_{seq:06d}_*_leftImg8bit.png")))
            count = len(analysis_array(self.root, self.split, seq, "labels"))
            if count != len(frames):
                raise DatasetError(f"{video.frames[0].parent} holds {len(frames)} frames of snippet {seq} but its "
                                   f"analysis labels hold {count}; regenerate the set with `gsv data synth --force`")
            out.append(Video(video.name, frames, {k: partial(_frame_labels, self.root, self.split, seq, k)
                                                  for k in range(count)}))
        return out


class SyntheticStreetCamVid(SyntheticStreet):
    """The synthetic set with its labels in CamVid's 11 classes (:data:`CITYSCAPES_TO_CAMVID`), so that a CamVid
    keyframe net and propagation can train on it (the propagation's pre-training before CamVid)."""

    table = CAMVID

    def map_labels(self, raw: np.ndarray, path: Path) -> np.ndarray:
        return CITYSCAPES_TO_CAMVID[super().map_labels(raw, path)]

    def videos(self) -> list[Video]:
        return [Video(v.name, v.frames, {k: partial(_in_camvid_classes, read) for k, read in v.labels.items()})
                for v in super().videos()]


def _in_camvid_classes(read) -> np.ndarray:
    return CITYSCAPES_TO_CAMVID[read()]


def load_snippet(root: str | Path, split: str, seq: int) -> dict:
    """One synthetic snippet for analysis: its frames (T, 3, H, W) float in [0, 1] and :func:`load_analysis`."""
    out = load_analysis(root, split, seq)
    folder = Path(root) / "leftImg8bit_sequence" / split / CITY
    frames = [read_rgb(folder / f"{snippet_stem(seq, k)}_leftImg8bit.png") for k in range(len(out["labels"]))]
    out["frames"] = frames_to_tensor(frames)
    out["rgb"] = np.stack(frames)  # (T, H, W, 3) uint8
    return out


def snippet_ids(root: str | Path, split: str) -> range:
    """The snippet numbers of a split of a generated set: training snippets first, validation snippets after."""
    meta_path = Path(root) / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path} does not exist; generate the set with `gsv data synth --out {root}`")
    meta = json.loads(meta_path.read_text())
    ids = {"train": range(meta["snippets"]), "val": range(meta["snippets"], meta["snippets"] + meta["val_snippets"])}
    if split not in ids:
        raise DatasetError(f"the synthetic set has splits train and val, not {split!r}")
    return ids[split]


def first_val_snippet(root: str | Path) -> int:
    """Index of the first validation snippet of a generated set (they follow the training snippets)."""
    val = snippet_ids(root, "val")
    if not val:
        raise DatasetError(f"{root} has no validation snippets; generate it with --val-snippets 1 or more")
    return val[0]
