"""The example plugin's own tests: esq's conformance checks, as a third party runs them."""

import numpy as np
import pytest

from esq.testing import check_metric, check_quantizer, registry_of
from esq_plugin_example import mean_cosine, plugin


def test_sign_quantizer_conforms():
    check_quantizer(registry_of("quantizers", plugin).spec("random_projection"), input_dim=12, bits=16)


def test_mean_cosine_conforms():
    check_metric(registry_of("metrics", plugin).spec("mean_cosine"))


def test_mean_cosine_matches_formula():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    expected = np.mean([a @ b / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(x, y, strict=True)])
    assert mean_cosine(x, y) == pytest.approx(expected, rel=1e-12)
