"""Training augmentation applied identically to every frame, the label and the flow of a sample (sec. 4.1: random
scale, crops of 3/4 of the input, horizontal flip).

Frames stay RGB in [0, 1]; the normalisation that matches the keyframe net (ImageNet mean/std,
:func:`gsvlib.models.resnet.normalize`) happens inside the model, so samples need none.
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from gsvlib.data.labels import IGNORE


class RandomScaleCropFlip:
    """``sample["frames"]`` (T, 3, H, W), ``sample["label"]`` (H, W) and, if present, ``sample["flow"]`` (T, 2, H, W)
    in pixels (x, y) with ``sample["valid"]`` (H, W) bool, where the flow is known: scaled by one factor in ``scale``,
    cropped to ``crop`` x (H, W) (rounded to multiples of 8; padded with 0 / 255 = ignore / not valid where the scaled
    frame is smaller), flipped left-right with probability ``flip`` (which negates flow x)."""

    def __init__(self, scale=(0.5, 1.5), crop: float = 0.75, flip: float = 0.5, rng: random.Random | None = None):
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be a range (low, high) with 0 < low <= high, got {scale}")
        if not 0 < crop <= 1:
            raise ValueError(f"crop must be a fraction in (0, 1], got {crop}")
        self.scale = scale
        self.crop = crop
        self.flip = flip
        self.rng = rng or random

    def __call__(self, sample: dict) -> dict:
        frames, label, flow, valid = sample["frames"], sample["label"], sample.get("flow"), sample.get("valid")
        _, _, h, w = frames.shape
        s = self.rng.uniform(*self.scale)
        sh, sw = max(8, round(h * s)), max(8, round(w * s))
        frames = F.interpolate(frames, (sh, sw), mode="bilinear", align_corners=False)
        label = F.interpolate(label[None, None].float(), (sh, sw), mode="nearest-exact")[0, 0].long()
        if flow is not None:
            flow = F.interpolate(flow, (sh, sw), mode="bilinear", align_corners=False)
            flow = flow * torch.tensor([sw / w, sh / h]).view(1, 2, 1, 1)
        if valid is not None:
            valid = F.interpolate(valid[None, None].float(), (sh, sw), mode="nearest-exact")[0, 0] > 0.5
        ch, cw = max(8, round(h * self.crop / 8) * 8), max(8, round(w * self.crop / 8) * 8)
        ph, pw = max(0, ch - sh), max(0, cw - sw)
        if ph or pw:
            frames = F.pad(frames, (0, pw, 0, ph))
            label = F.pad(label, (0, pw, 0, ph), value=IGNORE)
            flow = F.pad(flow, (0, pw, 0, ph)) if flow is not None else None
            valid = F.pad(valid, (0, pw, 0, ph), value=False) if valid is not None else None
        y0, x0 = self.rng.randint(0, frames.shape[-2] - ch), self.rng.randint(0, frames.shape[-1] - cw)
        window = (..., slice(y0, y0 + ch), slice(x0, x0 + cw))
        frames, label = frames[window], label[window]
        flow = flow[window] if flow is not None else None
        valid = valid[window] if valid is not None else None
        if self.rng.random() < self.flip:
            frames, label = frames.flip(-1), label.flip(-1)
            if flow is not None:
                flow = flow.flip(-1) * torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
            valid = valid.flip(-1) if valid is not None else None
        out = {**sample, "frames": frames.contiguous(), "label": label.contiguous()}
        if flow is not None:
            out["flow"] = flow.contiguous()
        if valid is not None:
            out["valid"] = valid.contiguous()
        return out
