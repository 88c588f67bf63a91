"""Label tables and palettes: class names, colours, and the Cityscapes labelId -> trainId map (official table)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = 255  # label value excluded from losses and metrics


@dataclass(frozen=True)
class LabelTable:
    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]  # RGB per class

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def palette(self) -> np.ndarray:
        """(256, 3) uint8: class colours, black for ignore and unused values."""
        pal = np.zeros((256, 3), np.uint8)
        pal[: self.num_classes] = self.colors
        return pal

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) integer labels -> (H, W, 3) uint8 RGB image. Each colour is looked up as one 4-byte word (RGB and a
        pad byte), ten times faster than three bytes per pixel: the video writer colours every frame."""
        labels = np.asarray(labels)
        index = labels if labels.dtype == np.uint8 else labels.astype(np.int64).clip(0, 255)
        words = np.zeros((256, 4), np.uint8)
        words[:, :3] = self.palette()
        return np.take(words.view(np.uint32)[:, 0], index).view(np.uint8).reshape(*labels.shape, 4)[..., :3]


# Cityscapes, from the official cityscapesScripts labels.py: (labelId, name, trainId, colour).
CITYSCAPES_LABELS = [
    (0, "unlabeled", 255, (0, 0, 0)), (1, "ego vehicle", 255, (0, 0, 0)), (2, "rectification border", 255, (0, 0, 0)),
    (3, "out of roi", 255, (0, 0, 0)), (4, "static", 255, (0, 0, 0)), (5, "dynamic", 255, (111, 74, 0)),
    (6, "ground", 255, (81, 0, 81)), (7, "road", 0, (128, 64, 128)), (8, "sidewalk", 1, (244, 35, 232)),
    (9, "parking", 255, (250, 170, 160)), (10, "rail track", 255, (230, 150, 140)), (11, "building", 2, (70, 70, 70)),
    (12, "wall", 3, (102, 102, 156)), (13, "fence", 4, (190, 153, 153)), (14, "guard rail", 255, (180, 165, 180)),
    (15, "bridge", 255, (150, 100, 100)), (16, "tunnel", 255, (150, 120, 90)), (17, "pole", 5, (153, 153, 153)),
    (18, "polegroup", 255, (153, 153, 153)), (19, "traffic light", 6, (250, 170, 30)),
    (20, "traffic sign", 7, (220, 220, 0)), (21, "vegetation", 8, (107, 142, 35)), (22, "terrain", 9, (152, 251, 152)),
    (23, "sky", 10, (70, 130, 180)), (24, "person", 11, (220, 20, 60)), (25, "rider", 12, (255, 0, 0)),
    (26, "car", 13, (0, 0, 142)), (27, "truck", 14, (0, 0, 70)), (28, "bus", 15, (0, 60, 100)),
    (29, "caravan", 255, (0, 0, 90)), (30, "trailer", 255, (0, 0, 110)), (31, "train", 16, (0, 80, 100)),
    (32, "motorcycle", 17, (0, 0, 230)), (33, "bicycle", 18, (119, 11, 32)),
]  # labelId -1 (license plate) never appears in labelIds PNGs, which are uint8

CITYSCAPES_ID_TO_TRAINID = np.full(256, -1, np.int64)  # -1: not a Cityscapes labelId
for _id, _name, _train, _color in CITYSCAPES_LABELS:
    CITYSCAPES_ID_TO_TRAINID[_id] = _train

CITYSCAPES = LabelTable(
    "cityscapes",
    tuple(n for _, n, t, _ in sorted(CITYSCAPES_LABELS, key=lambda r: r[2]) if t != 255),
    tuple(c for _, _, t, c in sorted(CITYSCAPES_LABELS, key=lambda r: r[2]) if t != 255),
)
CITYSCAPES_TRAINID_TO_ID = {t: i for i, _, t, _ in CITYSCAPES_LABELS if t != 255}

# CamVid, 11 classes as in SegNet's release (labels 0..10, 11 = void); colours of the original CamVid classes.
CAMVID = LabelTable(
    "camvid",
    ("sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian", "bicyclist"),
    ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0), (192, 128, 128),
     (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
)
CAMVID_VOID = 11

# Cityscapes trainIds -> CamVid's 11 classes, grouped as SegNet's release groups CamVid's 32 (wall with building,
# terrain with tree, traffic lights with signs, trucks and buses with cars, riders and motorcycles with bicyclists);
# train has no CamVid class. It puts the synthetic set's labels in CamVid's classes (dataset "synthetic-camvid").
CITYSCAPES_TO_CAMVID = np.full(256, IGNORE, np.uint8)
for _city, _camvid in {"road": "road", "sidewalk": "pavement", "building": "building", "wall": "building",
                       "fence": "fence", "pole": "pole", "traffic light": "sign symbol", "traffic sign": "sign symbol",
                       "vegetation": "tree", "terrain": "tree", "sky": "sky", "person": "pedestrian",
                       "rider": "bicyclist", "car": "car", "truck": "car", "bus": "car", "motorcycle": "bicyclist",
                       "bicycle": "bicyclist"}.items():
    CITYSCAPES_TO_CAMVID[CITYSCAPES.classes.index(_city)] = CAMVID.classes.index(_camvid)
