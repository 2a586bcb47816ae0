"""A pipeline's own command-line options, derived from its config dataclass.

After the pipeline's name, every field ``some_name`` is ``--some-name VALUE`` (or
``--some-name=VALUE``, or ``--some_name``; values in TOML syntax, else text, as with ``--set``). A ``bool`` field is a
flag: ``--some-name`` sets it, ``--no-some-name`` clears it. A list field takes the values up to
the next option (``--metrics cka rsa``, or ``--metrics cka,rsa``), repeated uses add to them, and a TOML list counts as
its items. A field's metadata may add spellings:
``"option"`` names another option for it (``--model-path`` for ``model_paths``), and ``"negative"``
names a flag that sets a ``bool`` field false (``--skip-text-to-image``).

>>> from dataclasses import dataclass, field
>>> @dataclass
... class Config:
...     paths: list[str] = field(default_factory=list, metadata={"option": "path"})
...     plots: bool = True
...     max_steps: int = 1
>>> option_layers(Config, ["--path", "a", "--path=b", "--no-plots", "--max_steps", "3"], "demo")
[('--path', {'paths': ['a', 'b']}), ('--no-plots', {'plots': False}), ('--max_steps', {'max_steps': 3})]
>>> option_layers(Config, ["--path", "a", "b", "--path", "c"], "demo")
[('--path', {'paths': ['a', 'b', 'c']})]
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from esq.config import Layer, parse_value
from esq.errors import ConfigError, UnknownNameError
from esq.names import did_you_mean


@dataclass(frozen=True)
class PipelineOption:
    """One command-line spelling of a config field: a ``value``, a list ``item``, or a ``flag``
    that stores ``flag_value``. Values for text fields stay text (``--name 2024``)."""

    field: str
    kind: str
    flag_value: bool = True
    text: bool = False


def _without_none(annotation: Any) -> Any:
    arms = [arm for arm in typing.get_args(annotation) if arm is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(arms) == 1:
        return arms[0]
    return annotation


def pipeline_options(config_type: type) -> dict[str, PipelineOption]:
    """Option name (with ``--``) → what it sets, for every init field of ``config_type``."""
    hints = typing.get_type_hints(config_type)
    options: dict[str, PipelineOption] = {}
    for field in dataclasses.fields(config_type):
        if not field.init:
            continue
        names = [field.name.replace("_", "-"), field.metadata.get("option")]
        annotation = _without_none(hints[field.name])
        is_list = typing.get_origin(annotation) is list or annotation is list
        item = (typing.get_args(annotation) or (Any,))[0] if is_list else annotation
        for name in filter(None, names):
            if annotation is bool:
                options[f"--{name}"] = PipelineOption(field.name, "flag", True)
                options[f"--no-{name}"] = PipelineOption(field.name, "flag", False)
            else:
                kind = "item" if is_list else "value"
                options[f"--{name}"] = PipelineOption(field.name, kind, text=item is str)
        if field.metadata.get("negative"):
            options[f"--{field.metadata['negative']}"] = PipelineOption(field.name, "flag", False)
    return options


def option_names(config_type: type) -> dict[str, list[str]]:
    """Field name → its command-line spellings, for ``--help``."""
    names: dict[str, list[str]] = {}
    for option, target in pipeline_options(config_type).items():
        names.setdefault(target.field, []).append(option)
    return names


def option_layers(config_type: type, args: list[str], pipeline: str) -> list[Layer]:
    """Config layers (source, values) from the arguments after the pipeline's name; a list
    field's repeated items are gathered into one layer."""
    options = pipeline_options(config_type)
    layers: dict[str, Layer] = {}
    index = 0
    while index < len(args):
        argument = args[index]
        name, equals, inline = argument.partition("=")
        # --some_option, as the scripts esq replaces spelled it, is --some-option
        target = options.get(name) or options.get("--" + name[2:].replace("_", "-") if name.startswith("--") else name)
        if target is None:
            hint = did_you_mean(name, options) if name.startswith("--") else ""
            what = f"option {name!r}" if name.startswith("--") else f"argument {argument!r}"
            raise UnknownNameError(
                f"esq run {pipeline}: unknown {what}{hint}; see esq run {pipeline} --help for its options"
            )
        if target.kind == "flag":
            if equals:
                raise ConfigError(f"{name} is a flag and takes no value (got {argument!r})")
            layers[target.field] = (name, {target.field: target.flag_value})
            index += 1
            continue
        if equals:
            texts = [inline]
        else:
            if index + 1 >= len(args):
                raise ConfigError(f"{name} needs a value")
            # a list option takes every value up to the next option (--metrics cka rsa), as argparse's nargs="+"
            end = index + 2
            while target.kind == "item" and end < len(args) and not args[end].startswith("--"):
                end += 1
            texts = args[index + 1 : end]
            index = end - 1
        index += 1
        values = [text if target.text else parse_value(text) for text in texts]
        if target.kind == "item":  # --metrics cka,rsa as --set metrics=cka,rsa
            values = [part.strip() for v in values for part in (v.split(",") if isinstance(v, str) else [v])]
            values = [v for v in values if v != ""]
        if target.kind == "item":
            previous = layers.get(target.field, (name, {target.field: []}))[1][target.field]
            items = previous if isinstance(previous, list) else []
            value: Any = items + [item for v in values for item in (v if isinstance(v, list) else [v])]
        else:
            value = values[0]
        layers[target.field] = (name, {target.field: value})
    return list(layers.values())
