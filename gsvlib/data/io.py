"""Reading and writing the PNG frames and label maps of the datasets, with errors that name the file."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from isal import isal_zlib
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
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))  # convert copies even an RGB image


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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: grey, RGB, RGBA


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(array: np.ndarray) -> bytes:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 -> the bytes of an 8-bit PNG. Every row is stored as its difference from
    the row above (PNG filter 2, "Up") and deflated by ISA-L at level 1: files the size of zlib level 1's with
    adaptive filters (Pillow's), in a sixth of the time, which is what a video written frame by frame needs."""
    array = np.asarray(array)
    channels = 1 if array.ndim == 2 else array.shape[-1]
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or channels not in PNG_COLOUR_TYPES:
        raise ValueError(f"encode_png takes (H, W), (H, W, 3) or (H, W, 4) uint8 arrays, got {array.dtype} "
                         f"{array.shape}")
    h, w = array.shape[:2]
    rows = array.reshape(h, w * channels)
    filtered = np.empty((h, 1 + w * channels), np.uint8)
    filtered[:, 0] = 2  # each row's filter byte: Up
    filtered[0, 1:] = rows[0]  # above the first row: zeros
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG defines it
    header = struct.pack(">IIBBBBB", w, h, 8, PNG_COLOUR_TYPES[channels], 0, 0, 0)  # deflate, no interlace
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", isal_zlib.compress(filtered.tobytes(), 1))
            + _chunk(b"IEND", b""))


def write_png(path: str | Path, array: np.ndarray) -> None:
    """An (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 array as a PNG (:func:`encode_png`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(array))
