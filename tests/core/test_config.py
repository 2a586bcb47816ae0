"""Config resolution: TOML file < --set < options, with typed values and clear errors."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Literal

import pytest

from esq import ConfigError, PipelineConfig, UnknownNameError
from esq.config import build_config, config_to_dict, parse_set_options, read_toml, write_config


@dataclass
class Inner:
    size: int = 1


@dataclass
class Config(PipelineConfig):
    epochs: int = 1
    lr: float = 0.1
    loss: Literal["ce", "dice"] = "ce"
    metrics: list[str] | None = None
    inner: Inner = field(default_factory=Inner)
    extra: dict[str, dict[str, int]] = field(default_factory=dict)
    window: tuple[int, float] = (1, 2.0)


def build(*layers):
    return build_config(Config, list(layers), pipeline="p")


def test_later_sources_override_earlier_ones(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 5\nlr = 0.5\nseed = 1\n[inner]\nsize = 3\n")
    config = build((str(path), read_toml(path)), ("--set", parse_set_options(["lr=1e-3"])), ("--seed", {"seed": 7}))
    assert (config.epochs, config.lr, config.seed, config.inner.size) == (5, 0.001, 7, 3)


def test_set_values_parse_as_toml_or_fall_back_to_text():
    values = parse_set_options(["a=3", "b=true", 'c=["x", "y"]', "d=hello", "e.f=2", "g=cka,rsa"])
    assert values == {"a": 3, "b": True, "c": ["x", "y"], "d": "hello", "e": {"f": 2}, "g": "cka,rsa"}


def test_comma_separated_text_fills_a_list_and_ints_fill_floats():
    config = build(("--set", parse_set_options(["metrics=cka, rsa", "lr=1"])))
    assert config.metrics == ["cka", "rsa"] and config.lr == 1.0 and isinstance(config.lr, float)


def test_bracketed_list_without_quotes_fills_a_list():
    assert build(("--set", parse_set_options(["metrics=[cka,rsa]"]))).metrics == ["cka", "rsa"]


def test_set_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match="--set 'epochs': expected KEY=VALUE"):
        parse_set_options(["epochs"])


def test_toml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("epochs = 1\nlr = = 2\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: invalid TOML: .*line 2, column 6"):
        read_toml(path)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        read_toml(tmp_path / "none.toml")


def test_unknown_option_names_the_source_and_suggests(tmp_path):
    with pytest.raises(UnknownNameError) as error:
        build(("cfg.toml", {"epocs": 3}))
    assert str(error.value).startswith("cfg.toml: unknown option 'epocs' for pipeline 'p' (did you mean 'epochs'?)")


def test_unknown_nested_option_is_named_with_its_path():
    with pytest.raises(UnknownNameError, match="--set: unknown option 'inner.sise'"):
        build(("--set", parse_set_options(["inner.sise=2"])))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("epochs=abc", "--set epochs: expected int, got 'abc'"),
        ("epochs=1.5", "--set epochs: expected int, got 1.5"),
        ("loss=dise", "--set loss: 'dise' is not one of 'ce', 'dice' (did you mean 'dice'?)"),
        ("metrics=[1]", "--set metrics[0]: expected str, got 1"),
        ("inner=3", "--set inner: expected Inner, got 3"),
        ("extra.q.r=x", "--set extra.q.r: expected int, got 'x'"),
        ("window=[1, 2, 3]", "--set window: expected 2 items, got [1, 2, 3]"),
        ("window=[1.5, 2]", "--set window[0]: expected int, got 1.5"),
    ],
)
def test_wrong_types_name_the_option_and_value(item, message):
    with pytest.raises(ConfigError) as error:
        build(("--set", parse_set_options([item])))
    assert str(error.value) == message


def test_written_config_reads_back_to_the_same_config(tmp_path):
    config = build(("--set", parse_set_options(["metrics=a,b", "inner.size=4", "extra.x.y=1", "name=run1"])))
    path = write_config(tmp_path / "config.toml", config, header="resolved")
    assert path.read_text().startswith("# resolved\n")
    again = build((str(path), read_toml(path)))
    assert again == config
    assert tomllib.loads(path.read_text()) == config_to_dict(config)
    assert not list(tmp_path.glob(".*tmp"))
