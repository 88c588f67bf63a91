"""Reading and writing the PNG frames and label maps of the datasets, with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


class DatasetError(RuntimeError):
    """A dataset on disk is missing, incomplete or malformed; the message names the file and the fix."""


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist")
    try:
        img = Image.open(path)
        img.load()  # decodes now, so a truncated file fails here and not later
        return img
    except Exception as e:
        raise DatasetError(f"{path} could not be read as an image ({type(e).__name__}: {e}); the file is "
                           "truncated or not a PNG/JPEG: re-extract or re-generate it") from e


def read_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB. 16-bit grayscale (PIL modes I;16 and I) is scaled to 8 bits, not clipped to white."""
    img = _open(Path(path))
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(img).astype(np.int64)
        if gray.min(initial=0) < 0 or gray.max(initial=0) > 65535:
            raise DatasetError(f"{path} is a {img.mode} image with values outside 0..65535; save frames as 8- or "
                               "16-bit RGB or grayscale")
        return np.repeat(((gray * 255 + 32767) // 65535).astype(np.uint8)[..., None], 3, axis=-1)
    return np.asarray(img.convert("RGB"))


def read_label(path: str | Path) -> np.ndarray:
    """(H, W) uint8 label map from a single-channel (L or P mode) PNG."""
    path = Path(path)
    img = _open(path)
    if img.mode not in ("L", "P", "I", "I;16"):
        raise DatasetError(f"{path} is a {img.mode} image, expected a single-channel label PNG (mode L or P): "
                           "colour-coded labels must be converted to ids first")
    arr = np.asarray(img)
    if arr.max(initial=0) > 255:
        raise DatasetError(f"{path} holds label values up to {arr.max()}, expected 0..255")
    return arr.astype(np.uint8)


def write_png(path: str | Path, array: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, compress_level=1)
