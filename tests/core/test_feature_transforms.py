"""Feature transform names, chunk-wise pooling and PCA of esq run degradation."""

from __future__ import annotations

import numpy as np
import pytest

from esq.builtin.pipelines.degradation.feature_transforms import (
    Transform,
    apply_pca,
    parse_transform,
    pool_chunks,
    pooled_width,
)
from esq.errors import ConfigError

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("raw", Transform("raw", "gap", None)),
        ("gram", Transform("gram", "gram", None)),
        ("gram_pca", Transform("gram_pca", "gram", 7)),
        ("raw_pca_3", Transform("raw_pca_3", "gap", 3)),
    ],
)
def test_transform_names(name, expected):
    assert parse_transform(name, pca_dim=7) == expected


@pytest.mark.parametrize("name", ["gram_only", "pca", "raw_pca_0", "gram_pca_", "RAW"])
def test_unknown_transform_names_say_what_is_valid(name):
    with pytest.raises(ConfigError, match=f"unknown transform '{name}'; use raw or gram"):
        parse_transform(name, pca_dim=10)


def test_pooling_chunks_equals_pooling_everything_at_once():
    from esq.builtin.pooling import pool

    maps = np.random.default_rng(0).normal(size=(10, 4, 3, 3)).astype(np.float16)
    chunks = [maps[:4], maps[4:8], maps[8:]]
    for method in ("gap", "gram"):
        whole = pool(torch.from_numpy(maps.astype(np.float32)), method).double()
        pooled = pool_chunks(chunks, method)
        assert pooled.dtype == torch.float64 and torch.allclose(pooled, whole)
    assert pooled_width("gram", 4) == 10 == pool_chunks(chunks, "gram").shape[1]
    assert pooled_width("gap", 4) == 4


def test_pca_is_fitted_on_the_reference_and_applied_to_the_others():
    generator = np.random.default_rng(1)
    reference = torch.from_numpy(generator.normal(size=(30, 6)))
    other = torch.from_numpy(generator.normal(size=(5, 6)) + 3.0)
    projected, others = apply_pca(reference, {"blur": other}, 2)
    centred = reference - reference.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    # the same subspace as the reference's first two principal directions, whatever the signs
    assert torch.allclose(projected.abs(), (centred @ vh[:2].T).abs())
    assert torch.allclose(others["blur"].abs(), ((other - reference.mean(0)) @ vh[:2].T).abs())
