"""Typed configuration: YAML + overrides -> dataclasses, with clear errors."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from xseason.core.config import apply_override, from_dict, load_config, to_dict
from xseason.core.errors import ConfigError


@dataclass
class Inner:
    radius: float = 0.1
    mode: Literal["fast", "exact"] = "fast"

    def validate(self) -> None:
        if self.radius <= 0:
            raise ValueError(f"radius must be > 0, got {self.radius}")


@dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    conditions: list[str] = field(default_factory=list)
    limit: int | None = None
    inner: Inner = field(default_factory=Inner)


def test_defaults_and_round_trip():
    cfg = from_dict(Outer, {})
    assert cfg == Outer()
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\ninner:\n  radius: 2\n")
    cfg = load_config(Outer, path, ["inner.mode=exact", "conditions=[a, b]", "limit=3"])
    assert (cfg.steps, cfg.inner.radius, cfg.inner.mode, cfg.conditions, cfg.limit) == (
        5,
        2.0,
        "exact",
        ["a", "b"],
        3,
    )


@pytest.mark.parametrize(
    "data, message",
    [
        ({"stepz": 1}, "steps"),  # misspelt: suggestion
        ({"steps": "ten"}, "steps: expected an integer"),
        ({"steps": True}, "steps: expected an integer"),
        ({"inner": {"mode": "slow"}}, "inner.mode: 'slow' is not one of"),
        ({"inner": {"radius": -1}}, "radius must be > 0"),
        ({"conditions": "a"}, "conditions: expected a list"),
    ],
)
def test_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, bad)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_override({}, "steps")
