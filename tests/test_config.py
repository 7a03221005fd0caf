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


def test_packaged_configs_resolve_by_name(tmp_path, monkeypatch):
    """`train` names the config shipped in the package, from any working directory; a file wins over a
    name; a name that is neither is an error listing the packaged configs (never the defaults)."""
    from xseason.core.config import PACKAGED_CONFIGS, config_file, packaged_config_names
    from xseason.learn.train import TrainConfig, load_train_config

    monkeypatch.chdir(tmp_path)
    assert "train" in packaged_config_names()
    assert config_file("train") == config_file("train.yaml") == PACKAGED_CONFIGS / "train.yaml"
    cfg = load_train_config("train", ["steps=7"])
    assert cfg.steps == 7 and cfg.model.num_classes is None and cfg != TrainConfig()
    (tmp_path / "train").write_text("steps: 3\n")
    assert load_train_config("train").steps == 3  # a file of that name is read as given
    for missing in ("trian", "configs/train.yaml", "train.yml"):
        with pytest.raises(
            ConfigError, match=r"no such config file, nor a packaged config .*packaged: .*train"
        ):
            load_train_config(missing)


def test_packaged_configs_ship_as_package_data():
    """pyproject.toml's package data holds xseason/configs/*.yaml, and configs/train.yaml of the
    repository is that file."""
    from xseason.core.config import PACKAGED_CONFIGS

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = PACKAGED_CONFIGS.parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "configs/*.yaml" in data["xseason"]
    assert (root / "configs" / "train.yaml").resolve() == (PACKAGED_CONFIGS / "train.yaml").resolve()
