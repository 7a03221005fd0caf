"""The capture conditions: lighting, sky, weather and season of one traversal.

A condition changes shading only, plus the season-dependent geometry (tree leaves) that the
renderer adds; snow is colour only (no geometric offset: snow-covered surfaces keep their
exact depth). Colours are linear RGB; the renderer applies exposure, a gamma of 2.2,
sensor noise and (for rain) image-space streaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _unit(v) -> tuple[float, float, float]:
    v = np.asarray(v, float)
    return tuple(v / np.linalg.norm(v))


@dataclass(frozen=True)
class Condition:
    name: str
    season: str
    daytime: str
    weather: str
    leaves: str  # "summer", "autumn" or "none" (bare branches)
    sun_dir: tuple[float, float, float] = _unit([-0.4, 0.55, 0.75])  # towards the sun
    sun: tuple[float, float, float] = (0.0, 0.0, 0.0)  # sun irradiance (0 = overcast / night)
    ambient: tuple[float, float, float] = (0.5, 0.5, 0.5)  # sky light on an upward surface
    sky_top: tuple[float, float, float] = (0.2, 0.35, 0.7)
    sky_horizon: tuple[float, float, float] = (0.6, 0.7, 0.85)
    clouds: float = 0.0  # cloud contrast in the sky
    snow: float = 0.0  # snow cover on upward-facing surfaces, 0..1
    wet: float = 0.0  # wet, darker upward surfaces with lamp highlights, 0..1
    fog: float = 0.0  # extinction per metre
    fog_colour: tuple[float, float, float] = (0.5, 0.5, 0.5)
    lamps: float = 0.0  # street-lamp intensity (0 = off)
    windows: float = 0.0  # share of windows lit
    exposure: float = 1.0
    noise: float = 0.004  # sensor noise sigma, in output [0, 1] units
    rain: float = 0.0  # rain-streak strength


# The conditions, one column each, in the order of _NAMES: a row per field of Condition (None keeps
# the field's default).
_NAMES = ("summer-day", "autumn-overcast", "winter-snow", "night", "dusk-rain")
_TABLE = dict(
    season=("summer", "autumn", "winter", "summer", "spring"),
    daytime=("day", "day", "day", "night", "dusk"),
    weather=("sun", "overcast", "snow", "clear", "rain"),
    leaves=("summer", "autumn", "none", "summer", "summer"),
    sun_dir=(None, None, _unit([0.6, -0.5, 0.35]), None, None),
    sun=((1.25, 1.15, 1.0), None, (0.55, 0.55, 0.6), None, None),
    ambient=((0.32, 0.38, 0.5), (0.78, 0.78, 0.8), (0.5, 0.55, 0.66), (0.008, 0.01, 0.02), (0.2, 0.19, 0.22)),
    sky_top=(None, (0.62, 0.64, 0.68), (0.62, 0.68, 0.78), (0.004, 0.006, 0.015), (0.16, 0.16, 0.2)),
    sky_horizon=(None, (0.75, 0.76, 0.78), (0.82, 0.84, 0.88), (0.03, 0.03, 0.05), (0.32, 0.28, 0.3)),
    clouds=(0.35, 0.25, 0.2, None, 0.3),
    snow=(None, None, 1.0, None, None),
    wet=(None, None, None, None, 0.8),
    fog=(None, None, 0.003, None, 0.012),
    fog_colour=(None, None, (0.8, 0.82, 0.86), None, (0.27, 0.26, 0.3)),
    lamps=(None, None, None, 1.0, 0.7),
    windows=(None, None, None, 0.35, 0.25),
    exposure=(None, 1.05, 0.95, 2.2, 1.5),
    noise=(None, None, None, 0.025, 0.01),
    rain=(None, None, None, None, 0.2),
)


def _from_table(names: tuple[str, ...], table: dict[str, tuple]) -> dict[str, Condition]:
    """One Condition per column of `table` (None: the field's default), by name."""
    return {
        name: Condition(name, **{field: row[k] for field, row in table.items() if row[k] is not None})
        for k, name in enumerate(names)
    }


CONDITIONS: dict[str, Condition] = _from_table(_NAMES, _TABLE)
