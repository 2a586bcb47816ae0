"""Feature maps and tokens to one vector per image, shared by every pipeline.

A backbone's ``features()`` gives ``(N, C, H, W)`` maps or ``(N, T, D)`` tokens. ``pool`` turns
one such tensor, or a ``{layer: tensor}`` mapping (an aggregated tap, concatenated in order), into
an ``(N, F)`` matrix:

- ``gap``: the global average over positions, ``F = C`` (for tokens: the mean token);
- ``gram``: the Gram matrix of channels over positions, ``G = Φ Φᵀ / (H·W)`` with ``Φ`` the
  ``C × H·W`` map, upper triangle with the diagonal, ``F = C(C+1)/2`` (Gatys et al. 2016's style
  representation; for tokens the channels are the ``D`` token dimensions and positions the ``T``
  tokens).

``PCA`` reduces the pooled vectors: fit it on the reference set, apply it to every other set.

>>> import torch
>>> maps = torch.arange(8.0).reshape(1, 2, 2, 2)
>>> pool(maps, "gap")
tensor([[1.5000, 5.5000]])
>>> pool(maps, "gram")  # [Σa², Σab, Σb²] / 4 for channels a = 0..3, b = 4..7
tensor([[ 3.5000,  9.5000, 31.5000]])
>>> pool({"a": maps, "b": maps}, "gap").shape
torch.Size([1, 4])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from esq import ConfigError, DataError

POOLINGS = ("gap", "gram")


def _channels_by_positions(features: Any) -> Any:
    """``(N, C, H, W)`` → ``(N, C, H·W)``; ``(N, T, D)`` → ``(N, D, T)``."""
    if features.ndim == 4:
        return features.flatten(2)
    if features.ndim == 3:
        return features.transpose(1, 2)
    raise DataError(f"pooling expects (N, C, H, W) maps or (N, T, D) tokens, got shape {tuple(features.shape)}")


def gap(features: Any) -> Any:
    """Global average over positions: ``(N, C)``."""
    return _channels_by_positions(features).mean(dim=2)


def gram(features: Any) -> Any:
    """Upper triangle (with the diagonal) of ``Φ Φᵀ / positions``: ``(N, C(C+1)/2)``."""
    import torch

    phi = _channels_by_positions(features)
    channels, positions = phi.shape[1], phi.shape[2]
    matrix = torch.bmm(phi, phi.transpose(1, 2)) / positions
    rows, columns = torch.triu_indices(channels, channels, device=matrix.device)
    return matrix[:, rows, columns]


_FUNCTIONS = {"gap": gap, "gram": gram}


def pool(features: Any, method: str = "gap") -> Any:
    """One tensor, or ``{layer: tensor}`` pooled per layer and concatenated in order."""
    import torch

    if method not in _FUNCTIONS:
        raise ConfigError(f"unknown pooling {method!r}; choose one of {', '.join(POOLINGS)}")
    if isinstance(features, Mapping):
        if not features:
            raise DataError("pooling got no layers; request at least one layer from the backbone")
        counts = {name: tensor.shape[0] for name, tensor in features.items()}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{name} {count}" for name, count in counts.items())
            raise DataError(f"pooling: the layers hold different numbers of images: {listed}")
        return torch.cat([_FUNCTIONS[method](tensor) for tensor in features.values()], dim=1)
    return _FUNCTIONS[method](features)


class PCA:
    """Principal components in float64, fitted once (on the reference set) and reused.

    Component signs are fixed (largest absolute loading positive), so a refit on the same data
    gives the same projection.

    >>> import torch
    >>> x = torch.randn(50, 5, generator=torch.Generator().manual_seed(0))
    >>> PCA(2).fit(x).transform(x).shape
    torch.Size([50, 2])
    """

    def __init__(self, dim: int) -> None:
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ConfigError(f"pca_dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.mean: Any = None
        self.components: Any = None
        self.explained_variance_ratio: Any = None

    def fit(self, x: Any) -> PCA:
        import torch

        if x.ndim != 2:
            raise DataError(f"PCA expects an (N, F) matrix, got shape {tuple(x.shape)}")
        samples, width = x.shape
        if self.dim > min(samples, width):
            raise ConfigError(
                f"pca_dim={self.dim} exceeds what {samples} samples × {width} features allow "
                f"(at most {min(samples, width)}); lower pca_dim or use more samples"
            )
        data = x.detach().to(torch.float64)
        self.mean = data.mean(dim=0)
        _, singular, vh = torch.linalg.svd(data - self.mean, full_matrices=False)
        components = vh[: self.dim]
        pivots = components.abs().argmax(dim=1)
        signs = torch.sign(components[torch.arange(self.dim), pivots])
        self.components = components * signs[:, None]
        variance = singular**2
        self.explained_variance_ratio = variance[: self.dim] / variance.sum().clamp_min(torch.finfo(torch.float64).tiny)
        return self

    def transform(self, x: Any) -> Any:
        import torch

        if self.components is None:
            raise ConfigError("PCA.transform called before fit; fit it on the reference features first")
        if x.ndim != 2 or x.shape[1] != self.components.shape[1]:
            raise DataError(f"PCA was fitted on {self.components.shape[1]} features, got shape {tuple(x.shape)}")
        return ((x.detach().to(torch.float64) - self.mean) @ self.components.T).to(x.dtype)
