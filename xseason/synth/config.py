"""Configuration of the built-in scene: `SynthConfig` (dataclasses, YAML-loadable) and the presets.

Presets (`presets/<name>.yaml`): `tiny` (unit-test scene: 5 conditions x 8 images at 320x240, a few
seconds), `demo` (6 traversals x 30 images at 640x480) and `random` (a new layout per seed, see
`random_world`: 5 conditions x 24 images at 640x480). A YAML file (`--config`) and `key=value`
overrides (`--set`) are applied on top of the chosen preset, in that order. With
`world.layout: random` and no `sequences`, `synth_config` draws the traversals from the seed
(`random_sequences`), so the resolved config (what truth.json records) regenerates the scene.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from xseason.core.config import load_config
from xseason.core.errors import ConfigError


@dataclass
class WorldConfig:
    """Street layout (metres). Trajectories run along +x from x = 0.

    `layout`: "street" (the demo street, `world.build_world`; the settings below shape it) or "random"
    (`random_world.build_random_world`: streets, squares and courtyards drawn from the seed; it uses
    x_start, x_end, car_occupancy and leaves_per_tree only).
    """

    layout: str = "street"
    x_start: float = -20.0
    x_end: float = 110.0
    road_half_width: float = 3.5
    sidewalk_width: float = 3.0
    curb_height: float = 0.12
    building_width: tuple[float, float] = (6.0, 14.0)
    building_height: tuple[float, float] = (7.0, 20.0)
    lamp_spacing: float = 14.0
    sign_spacing: float = 11.0
    tree_spacing: float = 10.0
    parking_spacing: float = 6.0
    car_occupancy: float = 0.55
    leaves_per_tree: int = 1200

    def validate(self) -> None:
        if self.layout not in ("street", "random"):
            raise ValueError(f"layout must be 'street' or 'random', got {self.layout!r}")
        if self.x_end - self.x_start < 20:
            raise ValueError("x_end - x_start must be at least 20 m")
        if min(self.building_width) < 2 or self.building_height[0] < 3:
            raise ValueError("buildings must be at least 2 m wide and 3 m high")


@dataclass
class SequenceSpec:
    """One traversal: its condition and where the camera rides (offsets in metres / degrees)."""

    condition: str
    name: str = ""  # default: "<index>-<condition>", e.g. "00-summer-day"
    lateral: float = (
        0.0  # y of the camera path (road centre = 0; keep |lateral| < 1.3 to stay out of parked cars)
    )
    height: float = 1.6
    heading_deg: float = 0.0  # yaw relative to +x (positive = to the left, towards +y)
    pitch_deg: float = 0.0  # positive = up
    start_x: float = 0.0


@dataclass
class SynthConfig:
    """Everything that defines a generated scene; same config and seed -> identical bytes."""

    seed: int = 0
    width: int = 640
    height: int = 480
    focal: float = 0.7  # fx = fy = focal * width
    images_per_sequence: int = 30
    spacing: float = 1.5  # metres between consecutive images
    yaw_wobble_deg: float = 2.0  # slow sinusoidal heading change along a traversal
    supersample: int = 1  # s x s colour samples per pixel (depth/labels always at the pixel centre)
    prior_sigma: float = 0.5  # noise (m) of the camera-centre priors prior_x/y/z
    world: WorldConfig = field(default_factory=WorldConfig)
    sequences: list[SequenceSpec] = field(default_factory=list)

    def validate(self) -> None:
        from xseason.synth.conditions import CONDITIONS

        if self.width < 16 or self.height < 16:
            raise ValueError("width and height must be at least 16 pixels")
        if not 0.2 <= self.focal <= 5:
            raise ValueError("focal (fx / width) must be in [0.2, 5]")
        if self.images_per_sequence < 1 or self.spacing <= 0:
            raise ValueError("images_per_sequence must be >= 1 and spacing > 0")
        if not 1 <= self.supersample <= 4:
            raise ValueError("supersample must be 1..4")
        if not self.sequences:
            if self.world.layout == "random":
                return  # synth_config draws them from the seed
            raise ValueError("at least one sequence is needed")
        for s in self.sequences:
            if s.condition not in CONDITIONS:
                raise ValueError(f"unknown condition {s.condition!r}; known: {', '.join(CONDITIONS)}")
            if abs(s.lateral) > 2.0:
                raise ValueError(
                    f"sequence {s.name or s.condition}: |lateral| must be <= 2 m (inside the road)"
                )
            if self.world.layout == "random" and abs(s.lateral) > 1.5:
                raise ValueError(
                    f"sequence {s.name or s.condition}: |lateral| must be <= 1.5 m in the random layout "
                    "(it keeps |y| < 2.2 m free)"
                )
        names = self.sequence_names()
        if len(set(names)) != len(names):
            raise ValueError(f"sequence names must be unique, got {names}")
        end = max(s.start_x for s in self.sequences) + self.spacing * (self.images_per_sequence - 1)
        if end > self.world.x_end - 10:
            raise ValueError(f"trajectories reach x = {end:.1f}; world.x_end must be at least 10 m further")

    def sequence_names(self) -> list[str]:
        return [s.name or f"{i:02d}-{s.condition}" for i, s in enumerate(self.sequences)]


PRESET_DIR = Path(__file__).with_name("presets")  # <name>.yaml: the settings that differ from the defaults


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def synth_config(
    preset: str = "demo",
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    seed: int | None = None,
) -> SynthConfig:
    """The preset, then the YAML file at `path`, then `a.b=value` overrides, then `seed` (if given)."""
    if preset not in preset_names():
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(preset_names())}")
    defaults = yaml.safe_load((PRESET_DIR / f"{preset}.yaml").read_text())
    overrides = list(overrides or []) + ([f"seed={seed}"] if seed is not None else [])
    cfg = load_config(SynthConfig, path, overrides, defaults=defaults)
    if not cfg.sequences:  # the random layout: traversals drawn from the seed
        cfg.sequences = random_sequences(cfg.seed)
        try:
            cfg.validate()
        except ValueError as exc:
            raise ConfigError(f"SynthConfig: {exc}") from None
    return cfg


def random_sequences(seed: int) -> list[SequenceSpec]:
    """One traversal per condition with seeded offsets that keep cross-condition overlap: |lateral|
    <= 1.2 m, height 1.3-2.3 m, heading within +-12 deg, pitch within +-4 deg, start within +-1.5 m."""
    from xseason.synth.conditions import CONDITIONS

    rng = np.random.default_rng([seed, 9])
    draws = rng.uniform([-1.2, 1.3, -12.0, -4.0, -1.5], [1.2, 2.3, 12.0, 4.0, 1.5], (len(CONDITIONS), 5))
    keys = ("lateral", "height", "heading_deg", "pitch_deg", "start_x")
    return [
        SequenceSpec(cond, **{k: round(float(v), 2) for k, v in zip(keys, row)})
        for cond, row in zip(CONDITIONS, draws)
    ]
