"""The README figure: one place of the demo street under every condition, plus its label map.

python -m xseason.synth.figure docs/conditions.png
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from xseason.core.files import atomic_path
from xseason.core.log import configure
from xseason.synth.conditions import CONDITIONS
from xseason.synth.config import synth_config
from xseason.synth.world import (
    BICYCLE,
    BUILDING,
    CAR,
    CLASS_NAMES,
    PERSON,
    POLE,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    VEGETATION,
)
from xseason.synth.writer import render_images

log = logging.getLogger(__name__)

# Cityscapes-like colours (RGB) of the classes, and by class id.
_COLOUR_OF = {
    ROAD: (128, 64, 128),
    SIDEWALK: (244, 35, 232),
    BUILDING: (70, 70, 70),
    VEGETATION: (107, 142, 35),
    POLE: (153, 153, 153),
    SIGN: (220, 220, 0),
    CAR: (0, 0, 142),
    SKY: (70, 130, 180),
    PERSON: (220, 20, 60),
    BICYCLE: (119, 11, 32),
}
CLASS_COLOURS = np.array([_COLOUR_OF[k] for k in CLASS_NAMES], np.uint8)


def conditions_panel(
    x: float = 14.0, lateral: float = 0.3, heading_deg: float = 12.0, preset: str = "demo"
) -> np.ndarray:
    """RGB mosaic (3 x 2 tiles): the place seen from one pose under each condition, and its labels."""
    seqs = [
        {"condition": c, "lateral": lateral, "height": 1.7, "heading_deg": heading_deg, "start_x": x}
        for c in CONDITIONS
    ]
    cfg = synth_config(preset, overrides=["images_per_sequence=1", "yaw_wobble_deg=0", f"sequences={seqs}"])
    names = [f"images/{n}/0000.png" for n in cfg.sequence_names()]
    renders = render_images(cfg, names)
    tiles = []
    for cond, name in zip(CONDITIONS, names):
        tiles.append(_caption(renders[name].rgb, cond))
    tiles.append(
        _caption(CLASS_COLOURS[np.minimum(renders[names[0]].label, len(CLASS_COLOURS) - 1)], "labels (exact)")
    )
    rows = [np.concatenate(tiles[i : i + 3], axis=1) for i in (0, 3)]
    return np.concatenate(rows, axis=0)


def _caption(rgb: np.ndarray, text: str) -> np.ndarray:
    img = np.ascontiguousarray(rgb.copy())
    scale = img.shape[0] / 480
    cv2.rectangle(img, (0, 0), (int(300 * scale), int(40 * scale)), (0, 0, 0), -1)
    cv2.putText(
        img,
        text,
        (int(10 * scale), int(28 * scale)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.9 * scale,
        (255, 255, 255),
        max(1, int(2 * scale)),
        cv2.LINE_AA,
    )
    return img


def main(argv: list[str] | None = None) -> int:
    configure()
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "docs/conditions.png")
    panel = conditions_panel()
    with atomic_path(out) as tmp:
        cv2.imwrite(str(tmp), panel[..., ::-1])
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
