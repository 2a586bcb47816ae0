"""The six similarity metrics as users reach them: through the registry (conformance checks) and
as plain functions of esq_metrics."""

from __future__ import annotations

import numpy as np
import pytest

import esq
import esq_metrics
from esq.testing import check_metric

SIX = ["cka", "pwcca", "geometry", "rsa", "relational", "jaccard_knn"]


def test_the_six_are_registered_as_similarity_metrics():
    similarity = [spec.name for spec in esq.registry("metrics").specs() if spec.kind == "similarity"]
    assert sorted(similarity) == sorted(SIX)


@pytest.mark.parametrize("name", SIX)
def test_each_passes_the_conformance_check_and_its_function_gives_the_value(name):
    spec = esq.registry("metrics").spec(name)
    check_metric(spec)
    generator = np.random.default_rng(0)
    x = generator.normal(size=(200, 12))
    y = x + 0.5 * generator.normal(size=x.shape)
    value = esq.registry("metrics").create(name)(x, y).value
    assert getattr(esq_metrics, name)(x, y) == value and spec.range[0] <= value <= spec.range[1]
    assert getattr(esq_metrics, name)(x, x) == pytest.approx(1.0, abs=1e-5)  # pwcca: 1 − O(epsilon)
