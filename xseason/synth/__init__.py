"""The built-in multi-condition street scene, rendered by exact ray casting with full ground truth.

Modules: `config` (SynthConfig, presets), `world` (procedural geometry, class ids; the demo
street), `random_world` (the random scene family: a new layout per seed, `--preset random`),
`conditions` (lighting/weather/season), `noise` and `shading` (procedural materials,
lighting), `cameras` (trajectories), `render` (ray casting, one view), `writer` (files).
See README.md in this folder for the scene, conventions and file layout.
"""

from xseason.synth.cameras import View, make_views, synth_camera
from xseason.synth.conditions import CONDITIONS, Condition
from xseason.synth.config import SequenceSpec, SynthConfig, WorldConfig, preset_names, synth_config
from xseason.synth.render import Rendered
from xseason.synth.world import CLASS_NAMES, MOVING_CLASSES
from xseason.synth.writer import render_images, render_scene, write_manifest

__all__ = [
    "CLASS_NAMES",
    "CONDITIONS",
    "Condition",
    "MOVING_CLASSES",
    "Rendered",
    "SequenceSpec",
    "SynthConfig",
    "View",
    "WorldConfig",
    "make_views",
    "render_images",
    "render_scene",
    "synth_camera",
    "preset_names",
    "synth_config",
    "write_manifest",
]
