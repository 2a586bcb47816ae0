"""Pipeline configs: typed dataclasses filled from a TOML file, ``--set key=value`` and options.

Later sources override earlier ones; every value is checked against the field's type, and an
error names where the value came from (the file, ``--set`` or the option).

>>> from dataclasses import dataclass
>>> @dataclass
... class Config(PipelineConfig):
...     epochs: int = 1
...     metrics: list[str] | None = None
>>> layers = [("--set", parse_set_options(["epochs=3", "metrics=cka,rsa"]))]
>>> build_config(Config, layers, pipeline="demo")
Config(name='', seed=0, epochs=3, metrics=['cka', 'rsa'])
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from esq.errors import ConfigError, UnknownNameError
from esq.files import write_atomic
from esq.names import did_you_mean

RUN_NAME = re.compile(r"[A-Za-z0-9._-]{0,100}")


@dataclass
class PipelineConfig:
    """Fields every pipeline config has. ``name`` labels the run directory.

    A subclass that defines ``__post_init__`` calls ``super().__post_init__()``.
    """

    name: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if not RUN_NAME.fullmatch(self.name):
            raise ValueError(f"name {self.name!r} may hold only letters, digits, '.', '_' and '-', at most 100 of them")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed {self.seed} must be between 0 and 2**32 - 1")


Layer = tuple[str, dict[str, Any]]


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config; a missing file or a syntax error names the file (and line, column)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as error:
        byte = error.object[error.start]
        raise ConfigError(f"{path}: not UTF-8 text (byte {byte:#04x} at {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file: {error.strerror or error}") from None
    if text.startswith("\ufeff"):
        raise ConfigError(f"{path}: starts with a byte-order mark; save it as UTF-8 without BOM")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {_with_position(str(error), text)}") from None


def _with_position(message: str, text: str) -> str:
    """tomllib says "at end of document" without a line: give the line and column there too."""
    line, column = text.count("\n") + 1, len(text) - text.rfind("\n")
    return message.replace("(at end of document)", f"(at end of document, line {line}, column {column})")


def parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax if it parses (``3``, ``1e-3``, ``true``, ``["a"]``), else text."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def parse_set_options(items: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``."""
    values: dict[str, Any] = {}
    for item in items:
        key, separator, raw = item.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, for example --set seed=1")
        target = values
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {item!r}: {parent!r} is set to a value and a table at once")
        target[leaf] = parse_value(raw.strip())
    return values


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _storable(value: Any, where: str) -> Any:
    """``value`` if config.toml and results.json can hold it: TOML's dates and times cannot."""
    if isinstance(value, datetime.date | datetime.time):
        raise ConfigError(f"{where}: dates and times are not option values, got {value!r}; quote it as a string")
    for key, item in value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ():
        _storable(item, f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]")
    return value


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` converted to ``annotation``, or a ``ConfigError`` naming ``where``."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if annotation is Any:
        return _storable(value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        errors = []
        for arm in (a for a in arguments if a is not type(None)):
            try:
                return _coerce(value, arm, where)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin is typing.Literal:
        if value in arguments:
            return value
        choices = ", ".join(repr(a) for a in arguments)
        hint = did_you_mean(str(value), [str(a) for a in arguments])
        raise ConfigError(f"{where}: {value!r} is not one of {choices}{hint}")
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        if isinstance(value, str):  # a,b or [a,b] without TOML quotes
            text = value.strip()
            text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if (origin is tuple or annotation is tuple) and arguments and arguments[-1] is not Ellipsis:
            if len(value) != len(arguments):
                raise ConfigError(f"{where}: expected {len(arguments)} items, got {value!r}")
            return tuple(
                _coerce(item, kind, f"{where}[{i}]")
                for i, (item, kind) in enumerate(zip(value, arguments, strict=True))
            )
        item_type = arguments[0] if arguments else Any
        items = [_coerce(item, item_type, f"{where}[{index}]") for index, item in enumerate(value)]
        return tuple(items) if origin is tuple or annotation is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        value_type = arguments[1] if arguments else Any
        return {key: _coerce(item, value_type, f"{where}.{key}") for key, item in value.items()}
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation in (str, Path):
        if isinstance(value, str | Path):
            return annotation(value)
    elif isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise ConfigError(f"{where}: expected {_type_name(annotation)}, got {value!r}")


def _origin(origins: dict[str, str], dotted: str) -> str:
    """The source that set ``dotted``: itself, the table holding it, or a value inside it."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in origins:
            return origins[".".join(parts[:end])]
    return next((source for key, source in origins.items() if key.startswith(f"{dotted}.")), "config")


def _build(config_type: type, values: dict[str, Any], origins: dict[str, str], pipeline: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(config_type)
    fields = {f.name: f for f in dataclasses.fields(config_type) if f.init}
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        origin = _origin(origins, dotted)
        if key not in fields:
            raise UnknownNameError(
                f"{origin}: unknown option {dotted!r} for pipeline {pipeline!r}"
                f"{did_you_mean(key, fields)}; options: {', '.join(prefix + name for name in fields)}"
            )
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
            kwargs[key] = _build(annotation, value, origins, pipeline, f"{dotted}.")
        else:
            kwargs[key] = _coerce(value, annotation, f"{origin} {dotted}")
    try:
        return config_type(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"pipeline {pipeline!r}: invalid config: {error}") from None


def _merge(
    base: dict[str, Any], override: dict[str, Any], origins: dict[str, str], source: str, prefix: str = ""
) -> None:
    for key, value in override.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, origins, source, f"{dotted}.")
        else:
            base[key] = value
            origins[dotted] = source


def build_config(config_type: type, layers: Sequence[Layer], pipeline: str) -> Any:
    """Merge ``layers`` (``(source, values)``, later wins) into a ``config_type`` instance."""
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for source, values in layers:
        _merge(merged, values, origins, source)
    return _build(config_type, merged, origins, pipeline)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A config as TOML-ready data (``None`` fields left out: they take their defaults)."""
    return {key: value for key, value in _plain(config).items() if value is not None}


def config_text(config: Any, header: str) -> str:
    """``config`` as the TOML ``esq run --config`` reads, under ``header`` as comment lines."""
    return "".join(f"# {line}\n" for line in header.splitlines()) + tomli_w.dumps(config_to_dict(config))


def write_config(path: Path, config: Any, header: str) -> Path:
    return write_atomic(path, config_text(config, header))


def config_layers(
    config_file: Path | None, set_options: tuple[str, ...], seed: int | None, **options: Any
) -> list[tuple[str, dict[str, Any]]]:
    """Where a config's values come from, later overriding earlier: the TOML file, ``--set``,
    ``--seed``, then other command-line ``options`` that were given (not ``None``)."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if config_file is not None:
        layers.append((str(config_file), read_toml(config_file)))
    if set_options:
        layers.append(("--set", parse_set_options(set_options)))
    if seed is not None:
        layers.append(("--seed", {"seed": seed}))
    for option, value in options.items():
        if value is not None and value != ():
            layers.append(
                (f"--{option.replace('_', '-')}", {option: list(value) if isinstance(value, tuple) else value})
            )
    return layers
