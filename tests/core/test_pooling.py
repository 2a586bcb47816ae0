"""Pooling against plain NumPy formulas: GAP, Gram upper triangle, PCA."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from esq.builtin.pooling import PCA, gap, gram, pool  # noqa: E402
from esq.errors import ConfigError, DataError  # noqa: E402


@pytest.fixture
def maps():
    return torch.randn(3, 4, 5, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_gap_is_the_mean_over_positions(maps):
    np.testing.assert_allclose(gap(maps).numpy(), maps.numpy().mean(axis=(2, 3)))


def test_gap_of_tokens_is_the_mean_token():
    tokens = torch.randn(2, 7, 5, dtype=torch.float64)
    np.testing.assert_allclose(gap(tokens).numpy(), tokens.numpy().mean(axis=1))


def test_gram_is_the_upper_triangle_of_channel_products_over_positions(maps):
    expected = []
    for image in maps.numpy():
        phi = image.reshape(4, -1)
        matrix = phi @ phi.T / phi.shape[1]
        expected.append(matrix[np.triu_indices(4)])
    np.testing.assert_allclose(gram(maps).numpy(), np.array(expected))
    assert gram(maps).shape == (3, 4 * 5 // 2)


def test_gram_of_tokens_treats_token_dimensions_as_channels():
    tokens = torch.randn(2, 9, 3, dtype=torch.float64)
    phi = tokens[0].numpy().T
    np.testing.assert_allclose(gram(tokens)[0].numpy(), (phi @ phi.T / 9)[np.triu_indices(3)])


def test_pool_concatenates_layers_in_order(maps):
    small = maps[:, :2]
    pooled = pool({"a": maps, "b": small}, "gap")
    np.testing.assert_allclose(pooled.numpy(), np.concatenate([gap(maps).numpy(), gap(small).numpy()], axis=1))


def test_pool_rejects_unknown_methods_and_shapes(maps):
    with pytest.raises(ConfigError, match="unknown pooling 'max'; choose one of gap, gram"):
        pool(maps, "max")
    with pytest.raises(DataError, match=r"got shape \(3, 4\)"):
        pool(maps[:, :, 0, 0], "gap")
    with pytest.raises(DataError, match="no layers"):
        pool({}, "gap")
    with pytest.raises(DataError, match=r"layers hold different numbers of images: a 3, b 2"):
        pool({"a": maps, "b": maps[:2]}, "gap")


def test_pca_matches_the_covariance_eigenvectors():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = x * torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    pca = PCA(3).fit(x)
    centred = x.numpy() - x.numpy().mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    top = vectors[:, ::-1][:, :3]
    projected = pca.transform(x).numpy()
    # the same subspace and the same variances, up to each component's sign
    np.testing.assert_allclose(np.abs(projected), np.abs(centred @ top), atol=1e-8)
    np.testing.assert_allclose(pca.explained_variance_ratio.numpy(), values[::-1][:3] / values.sum())


def test_pca_is_deterministic_and_applies_the_reference_fit_to_other_sets():
    generator = torch.Generator().manual_seed(2)
    reference, other = torch.randn(50, 8, generator=generator), torch.randn(10, 8, generator=generator)
    one, two = PCA(2).fit(reference), PCA(2).fit(reference.clone())
    torch.testing.assert_close(one.transform(other), two.transform(other))
    assert one.transform(other).dtype == torch.float32


def test_pca_errors_say_what_to_change():
    with pytest.raises(ConfigError, match="pca_dim must be a positive integer"):
        PCA(0)
    with pytest.raises(ConfigError, match="pca_dim=5 exceeds what 4 samples × 8 features allow"):
        PCA(5).fit(torch.randn(4, 8))
    with pytest.raises(ConfigError, match="before fit"):
        PCA(2).transform(torch.randn(4, 8))
    with pytest.raises(DataError, match="fitted on 8 features"):
        PCA(2).fit(torch.randn(10, 8)).transform(torch.randn(3, 7))
