"""Registries: names, specs, creation, and the errors for unknown names and options."""

from __future__ import annotations

import pytest

import esq
import fake_plugin
from esq import ConfigError, MetricSpec, PluginError, QuantizerSpec, UnknownNameError
from esq.registries import Registry
from esq.specs import PipelineSpec
from esq.testing import registry_of


def test_registry_lists_creates_and_describes():
    metrics = registry_of("metrics", fake_plugin)
    assert metrics.names() == ["mean_distance", "mean_shift"]
    assert metrics.spec("mean_shift").facts() == {
        "kind": "distribution",
        "higher_is_better": False,
        "range": (0.0, float("inf")),
    }
    assert isinstance(metrics.create("mean_shift"), fake_plugin.MeanShift)


def test_unknown_name_suggests_close_matches_and_lists_installed():
    with pytest.raises(UnknownNameError) as error:
        registry_of("metrics", fake_plugin).spec("mean_distanse")
    message = str(error.value)
    assert message.startswith("unknown metric 'mean_distanse' (did you mean 'mean_distance'")
    assert message.endswith("; installed metrics: mean_distance, mean_shift")


def test_empty_registry_says_what_to_install():
    with pytest.raises(UnknownNameError, match="no quantizers are installed; install esq-quantizers"):
        Registry("quantizers", []).spec("vq")


def test_unknown_option_is_an_error_listing_the_options():
    quantizers = registry_of("quantizers", fake_plugin)
    with pytest.raises(ConfigError) as error:
        quantizers.create("rounding", input_dim=4, level=3)
    assert "quantizer 'rounding' has no option 'level' (did you mean 'levels'?)" in str(error.value)
    assert "options: input_dim, bottleneck_dim, levels" in str(error.value)


def test_unknown_kind_is_an_error():
    with pytest.raises(UnknownNameError, match="unknown component kind 'metric' \\(did you mean 'metrics'\\?\\)"):
        esq.registry("metric")


@pytest.mark.parametrize("name", ["VQ", "my-quantizer", "", "a b"])
def test_spec_names_must_be_lowercase_identifiers(name):
    with pytest.raises(PluginError, match="invalid"):
        QuantizerSpec(name=name, factory=dict, summary="x")


def test_spec_summary_must_be_one_line():
    with pytest.raises(PluginError, match="one non-empty line"):
        QuantizerSpec(name="q", factory=dict, summary="two\nlines")


def test_metric_kind_is_checked():
    with pytest.raises(PluginError, match="kind 'paired'"):
        MetricSpec(name="m", factory=dict, summary="s", kind="paired", higher_is_better=True)


def test_pipeline_config_must_be_a_dataclass():
    with pytest.raises(PluginError, match="config must be a dataclass"):
        PipelineSpec(name="p", summary="s", config=dict, run=print)


def test_identical_specs_from_one_plugin_twice_are_one_entry():
    spec = QuantizerSpec(name="q", factory=dict, summary="s")
    assert Registry("quantizers", [spec, spec]).names() == ["q"]


def test_a_missing_required_option_is_a_config_error():
    with pytest.raises(ConfigError, match="quantizer 'rounding' needs option 'input_dim'"):
        registry_of("quantizers", fake_plugin).create("rounding")


def test_a_factory_rejecting_its_options_is_a_config_error():
    pytest.importorskip("torch")
    with pytest.raises(ConfigError, match=r"^quantizer 'rounding' with options \{'input_dim': 'four'\}: "):
        registry_of("quantizers", fake_plugin).create("rounding", input_dim="four")


def test_lazy_factory_imports_its_target_only_when_built_and_checks_options(tmp_path, monkeypatch):
    import sys

    from esq import lazy

    (tmp_path / "heavy_component.py").write_text(
        "class Heavy:\n    def __init__(self, size=1):\n        self.size = size\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("quantizers", [QuantizerSpec(name="heavy", factory=lazy("heavy_component:Heavy"), summary="s")])
    assert registry.names() == ["heavy"] and "heavy_component" not in sys.modules
    assert registry.create("heavy", size=3).size == 3
    with pytest.raises(ConfigError, match="has no option 'sise' \\(did you mean 'size'\\?\\)"):
        registry.create("heavy", sise=3)
