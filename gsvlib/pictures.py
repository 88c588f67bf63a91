"""Pictures as numpy arrays: label colours over frames, flow on the colour wheel, error maps, grey levels. Used by the
video writer (base install) and by the plotly figures of :mod:`gsvlib.viz`; needs numpy only."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gsvlib.data.labels import LabelTable


def overlay(frame: np.ndarray, labels: np.ndarray, table: LabelTable, alpha: float = 0.5) -> np.ndarray:
    """(H, W, 3) uint8 frame and (H, W) labels -> (H, W, 3) uint8 blend of the frame and the label colours, in 8-bit
    fixed point (alpha to the nearest 1/256), in place: a third of the time in floats, which the video writer feels."""
    w = round(alpha * 256)
    blend = np.multiply(frame, 256 - w, dtype=np.uint16)  # at most 255 * 256 once the colours are added
    blend += np.multiply(table.colorize(labels), w, dtype=np.uint16)
    blend += 128
    blend >>= 8
    return blend.astype(np.uint8)


def flow_to_rgb(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """(H, W, 2) flow (x, y) -> (H, W, 3) uint8 on the usual colour wheel: hue = direction, saturation = magnitude."""
    fx, fy = flow[..., 0], flow[..., 1]
    mag = np.hypot(fx, fy)
    max_norm = max_norm or max(float(mag.max()), 1e-6)
    hue = (np.arctan2(-fy, -fx) / np.pi + 1) / 2  # in [0, 1]
    sat = np.clip(mag / max_norm, 0, 1)
    h6 = hue * 6
    i = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = 1 - sat, 1 - sat * f, 1 - sat * (1 - f)
    v = np.ones_like(sat)
    rgb = np.choose(i[None], [np.stack(c) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return (np.moveaxis(rgb, 0, -1) * 255).round().astype(np.uint8)


def error_overlay(frame: np.ndarray, pred: np.ndarray, truth: np.ndarray, ignore: int = 255) -> np.ndarray:
    """Frame dimmed, wrong pixels red (ignored pixels left dim)."""
    out = (frame.astype(np.float32) * 0.45).astype(np.uint8)
    wrong = (pred != truth) & (truth != ignore)
    out[wrong] = (255, 40, 40)
    return out


def upsample_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """Blow up a 1/8-grid picture (h, w[, 3]) to (h * factor, w * factor[, 3]) with visible cells."""
    return image.repeat(factor, 0).repeat(factor, 1)


def gray(values: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    """(H, W) floats -> (H, W, 3) uint8 grey levels between ``lo`` (black) and ``hi`` (white)."""
    v = np.clip((np.asarray(values, dtype=np.float32) - lo) / (hi - lo), 0, 1)
    return np.repeat((v * 255).round().astype(np.uint8)[..., None], 3, -1)


def legend_strip(table: LabelTable, width: int, font_size: int = 12) -> np.ndarray:
    """(h, width, 3) uint8: a key of the table's class colours (swatch and name), in rows that fit ``width``; placed
    under overlay frames so that a video explains its own colours."""
    font = ImageFont.load_default(size=font_size)
    pad, swatch, row_h = 6, font_size, font_size + 8
    cells = [(name, color, swatch + 4 + round(font.getlength(name)) + 14) for name, color in
             zip(table.classes, table.colors)]
    rows, x = [[]], pad
    for cell in cells:  # greedy line breaking
        if x + cell[2] > width - pad and rows[-1]:
            rows.append([])
            x = pad
        rows[-1].append((x, *cell))
        x += cell[2]
    image = Image.new("RGB", (width, len(rows) * row_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for r, row in enumerate(rows):
        y = pad // 2 + r * row_h + (row_h - swatch) // 2
        for x0, name, color, _ in row:
            draw.rectangle((x0, y, x0 + swatch, y + swatch), fill=tuple(color), outline=(90, 90, 90))
            draw.text((x0 + swatch + 4, y + swatch / 2), name, fill=(20, 20, 20), font=font, anchor="lm")
    return np.asarray(image)


def flow_wheel(size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 key of :func:`flow_to_rgb`: the colour of a flow vector pointing from the centre to each
    pixel, full saturation on the rim; white outside the disk."""
    r = (np.arange(size) - (size - 1) / 2) / ((size - 1) / 2)
    xx, yy = np.meshgrid(r, r)
    wheel = flow_to_rgb(np.stack((xx, yy), -1), max_norm=1.0)
    wheel[np.hypot(xx, yy) > 1] = 255
    return wheel


def with_flow_key(picture: np.ndarray, size: int | None = None) -> np.ndarray:
    """``picture`` (a flow on the colour wheel) with :func:`flow_wheel` in its bottom-right corner, a quarter of its
    short side wide; a picture under 48 px is left without a key."""
    h, w = picture.shape[:2]
    size = size or min(h, w) // 4
    out = picture.copy()
    if size < 12:
        return out
    out[h - size - 2:h, w - size - 2:w] = 255  # a white frame around the key
    out[h - size - 1:h - 1, w - size - 1:w - 1] = flow_wheel(size)
    return out
