"""Typed configuration: dataclasses filled from YAML files and `key.sub=value` overrides.

Every stage defines its own dataclass with defaults for every knob; this module turns
plain dicts into those dataclasses, checking types and names, and reports mistakes
with the dotted path of the offending key (and a suggestion for misspelt names).
A dataclass may define `validate(self)` raising ValueError for cross-field checks.

Configs that ship with the package live in `xseason/configs/<name>.yaml`; `config_file` turns a
name (`train`) or a path into the file, and a name that is neither is an error listing them.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import types
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from xseason.core.errors import ConfigError

T = TypeVar("T")

PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"  # <name>.yaml, shipped as package data


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`, validating names, types and values."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        key = sorted(unknown)[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"{_join(where, key)}: unknown setting{hint}; known: {', '.join(fields)}")
    values = {name: _convert(hints[name], data[name], _join(where, name)) for name in data}
    try:
        obj = cls(**values)
    except TypeError as exc:  # a required field without default
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data (JSON/YAML-ready) view of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> T:
    """Read `cls`: `defaults` (e.g. a preset), then the YAML file at `path`, then `a.b=value`
    overrides (values in YAML syntax); later layers win key by key."""
    data: dict[str, Any] = copy.deepcopy(defaults) if defaults else {}
    if path is not None:
        data = merge_dicts(data, read_yaml(path))
    for item in overrides or []:
        apply_override(data, item)
    try:
        return from_dict(cls, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None


def packaged_config_names() -> list[str]:
    """Names of the configs that ship with the package (`xseason/configs/<name>.yaml`)."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def config_file(name_or_path: str | Path) -> Path:
    """The config file of `name_or_path`: that file when it exists, else the packaged config of that
    name (`train` or `train.yaml`); anything else is a ConfigError listing the packaged configs."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / f"{path.stem}.yaml"
    if path.name == str(name_or_path) and path.suffix in ("", ".yaml") and packaged.is_file():
        return packaged
    raise ConfigError(
        f"{name_or_path}: no such config file, nor a packaged config of that name "
        f"(packaged: {', '.join(packaged_config_names()) or 'none'})"
    )


def add_config_arguments(
    parser: argparse.ArgumentParser, *, set_help: str, config_help: str | None = None, **config: Any
) -> None:
    """The command-line options of a config: `--config FILE` when `config_help` is given (`config`:
    its other `add_argument` settings, e.g. `type=Path`), then `--set KEY=VALUE` (repeatable, into
    `args.overrides`, for `load_config`), with these help texts."""
    if config_help is not None:
        parser.add_argument("--config", help=config_help, **config)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=set_help
    )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (clear errors otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def merge_dicts(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, recursively for nested mappings (inputs are not modified)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = (
            merge_dicts(out[k], v)
            if isinstance(v, dict) and isinstance(out.get(k), dict)
            else copy.deepcopy(v)
        )
    return out


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set `data[a][b] = value` for `item = "a.b=value"` (value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. association.radius=0.2")
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}': value is not valid YAML: {exc}") from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = get_args(tp) or (Any, Any)
        return {_convert(kt, k, where): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    raise ConfigError(f"{where}: unsupported setting type {tp}")  # a programming error, said plainly


__all__ = [
    "from_dict",
    "to_dict",
    "load_config",
    "apply_override",
    "add_config_arguments",
    "config_file",
    "packaged_config_names",
    "PACKAGED_CONFIGS",
]
