"""esq.testing: each check passes on a correct component and fails on a broken one."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

import fake_plugin
from esq.testing import (
    check_backbone,
    check_degradation,
    check_metric,
    check_quantizer,
    check_retriever,
    registry_of,
)

torch = pytest.importorskip("torch")


def spec(kind: str, name: str, **changes: Any):
    return dataclasses.replace(registry_of(kind, fake_plugin).spec(name), **changes)


@pytest.mark.parametrize("name", ["mean_distance", "mean_shift"])
def test_check_metric_passes_correct_metrics(name):
    check_metric(spec("metrics", name))


def test_check_metric_catches_a_wrong_direction():
    with pytest.raises(AssertionError, match="contradicts higher_is_better=False"):
        check_metric(spec("metrics", "mean_distance", higher_is_better=False))


def test_check_metric_catches_a_value_outside_the_range():
    with pytest.raises(AssertionError, match="outside range"):
        check_metric(spec("metrics", "mean_shift", range=(0.0, 0.01)))


def test_check_metric_catches_missing_input_validation():
    class Unchecked:
        options: dict = {}

        def __call__(self, x, y):
            from esq import MetricResult

            return MetricResult(-float(np.abs(np.asarray(x)[:20] - np.asarray(y)[:20]).mean()))

    with pytest.raises(AssertionError, match="a 1-D input raised ValueError .*expected EsqError"):
        check_metric(spec("metrics", "mean_distance", factory=Unchecked))


def test_check_metric_catches_a_metric_without_options():
    with pytest.raises(AssertionError, match=r"lacks options \(Metric protocol\)"):
        check_metric(spec("metrics", "mean_distance", factory=lambda: lambda x, y: 0.0))


def test_check_quantizer_passes_a_correct_quantizer():
    check_quantizer(spec("quantizers", "rounding"), input_dim=6, levels=3)


def test_check_quantizer_catches_decode_that_differs_from_forward():
    def drifting(input_dim, **options):
        quantizer = fake_plugin.rounding_quantizer(input_dim, **options)
        original = quantizer.decode
        quantizer.decode = lambda codes: original(codes) + 1e-3
        return quantizer

    with pytest.raises(AssertionError, match=r"decode\(encode\(x\)\) differs"):
        check_quantizer(spec("quantizers", "rounding", factory=drifting))


def test_check_quantizer_catches_a_wrong_compression_ratio():
    def wrong_ratio(input_dim, **options):
        quantizer = fake_plugin.rounding_quantizer(input_dim, **options)
        quantizer.compression_ratio = lambda feature_dim: feature_dim / quantizer.bits_per_vector
        return quantizer

    with pytest.raises(AssertionError, match="compression_ratio"):
        check_quantizer(spec("quantizers", "rounding", factory=wrong_ratio))


def test_check_backbone_passes_a_frozen_backbone():
    check_backbone(spec("backbones", "tiny"))


def test_check_backbone_catches_batchnorm_drifting_in_train_mode():
    def drifting(**options):
        backbone = fake_plugin.tiny_backbone(**options)
        type(backbone).train = torch.nn.Module.train
        backbone.net[1].running_mean += 1.0
        backbone.features = lambda images, layers: (
            {layer: backbone.net(images).detach() for layer in layers}
            if all(layer in backbone.layers() for layer in layers)
            else backbone.layers()[99]
        )
        return backbone

    with pytest.raises(AssertionError, match="stay in eval mode"):
        check_backbone(spec("backbones", "tiny", factory=drifting))


def test_check_degradation_passes_seeded_noise():
    check_degradation(spec("degradations", "noise"))


def test_check_degradation_catches_levels_out_of_order():
    with pytest.raises(AssertionError, match="from mild to severe"):
        check_degradation(spec("degradations", "noise"), levels=(64.0, 4.0))


def test_check_degradation_catches_an_unseeded_degradation():
    class Unseeded(fake_plugin.Noise):
        def apply(self, images, level, seed):
            return super().apply(images, level, seed=int(torch.randint(1000, ())))

    with pytest.raises(AssertionError, match="not repeatable"):
        check_degradation(spec("degradations", "noise", factory=Unseeded))


def test_check_degradation_catches_a_level_unit_that_is_no_string():
    class Unlabelled(fake_plugin.Noise):
        level_unit = 255

    with pytest.raises(AssertionError, match="level_unit must be a string"):
        check_degradation(spec("degradations", "noise", factory=Unlabelled))


def test_check_retriever_passes_exact_search():
    check_retriever(spec("retrievers", "exact_ip"))


def test_check_retriever_catches_an_inexact_retriever_that_claims_exactness():
    class FirstKeysOnly(fake_plugin.ExactInnerProduct):
        def index(self, keys):
            super().index(keys)
            self.keys[10:] *= 0.5
            return self

    with pytest.raises(AssertionError, match="brute-force"):
        check_retriever(spec("retrievers", "exact_ip", factory=FirstKeysOnly))
