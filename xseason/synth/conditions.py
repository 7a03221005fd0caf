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


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in [
        Condition(
            "summer-day", "summer", "day", "sun", "summer",
            sun=(1.25, 1.15, 1.0), ambient=(0.32, 0.38, 0.5), clouds=0.35,
        ),
        Condition(
            "autumn-overcast", "autumn", "day", "overcast", "autumn",
            ambient=(0.78, 0.78, 0.8), sky_top=(0.62, 0.64, 0.68), sky_horizon=(0.75, 0.76, 0.78), clouds=0.25,
            exposure=1.05,
        ),
        Condition(
            "winter-snow", "winter", "day", "snow", "none",
            sun_dir=_unit([0.6, -0.5, 0.35]), sun=(0.55, 0.55, 0.6), ambient=(0.5, 0.55, 0.66),
            sky_top=(0.62, 0.68, 0.78), sky_horizon=(0.82, 0.84, 0.88), clouds=0.2, snow=1.0,
            fog=0.003, fog_colour=(0.8, 0.82, 0.86), exposure=0.95,
        ),
        Condition(
            "night", "summer", "night", "clear", "summer",
            ambient=(0.008, 0.01, 0.02), sky_top=(0.004, 0.006, 0.015), sky_horizon=(0.03, 0.03, 0.05),
            lamps=1.0, windows=0.35, exposure=2.2, noise=0.025,
        ),
        Condition(
            "dusk-rain", "spring", "dusk", "rain", "summer",
            ambient=(0.2, 0.19, 0.22), sky_top=(0.16, 0.16, 0.2), sky_horizon=(0.32, 0.28, 0.3), clouds=0.3,
            wet=0.8, fog=0.012, fog_colour=(0.27, 0.26, 0.3), lamps=0.7, windows=0.25, exposure=1.5,
            noise=0.01, rain=0.2,
        ),
    ]
}
