"""The ``binary`` quantizer: one bit per dimension, the sign, searched by Hamming distance
(binary embedding quantization, as sentence-transformers' ``precision="binary"``).

Each dimension, after optional centring on the training mean (``center``) and an optional
seeded random orthogonal rotation (``rotate``, ``seed``; it spreads the variance evenly over the
bits, as in iterative-quantization's starting point, Gong & Lazebnik 2011), becomes 1 where it
is positive and 0 elsewhere. A bit decodes to ±scale, the dimension's calibrated mean absolute
value, so the reconstruction error is meaningful. ``bits_per_vector = input_dim``.

``search`` finds nearest gallery codes by Hamming distance over the bits packed into bytes
(``numpy.bitwise_count``, a popcount).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from esq import DataError, check_bool, check_int
from esq_quantizers.calibrated import CalibratedQuantizer

# Hamming distances held at once in a search block (uint64 words of queries × gallery).
SEARCH_BLOCK_BYTES = 64 * 2**20


def random_rotation(dim: int, seed: int) -> torch.Tensor:
    """A ``dim × dim`` random orthogonal matrix (Haar-distributed: QR of a Gaussian, signs fixed),
    the same for the same seed on every machine.

    >>> rotation = random_rotation(4, seed=0)
    >>> torch.allclose(rotation @ rotation.T, torch.eye(4), atol=1e-6)
    True
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    gaussian = torch.randn(dim, dim, generator=generator, dtype=torch.float64, device="cpu")
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r))).float()


def packed_bits(bits: np.ndarray) -> np.ndarray:
    """``(N, d)`` 0/1 codes as ``(N, ceil(d / 64))`` uint64 words (zero-padded)."""
    packed = np.packbits(bits.astype(np.uint8), axis=1)
    padding = (-packed.shape[1]) % 8
    if padding:
        packed = np.pad(packed, ((0, 0), (0, padding)))
    return np.ascontiguousarray(packed).view(np.uint64)


def hamming_top_k(query_bits: np.ndarray, gallery_bits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` gallery rows nearest each query row in Hamming distance: ``(distances, ids)``,
    both ``Q k`` int64, distances ascending, equal distances in ascending id.

    >>> gallery = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 1]])
    >>> hamming_top_k(np.array([[1, 1, 0]]), gallery, k=3)[1].tolist()
    [[0, 2, 1]]
    """
    queries, gallery = packed_bits(query_bits), packed_bits(gallery_bits)
    count = gallery.shape[0]
    rows = max(1, SEARCH_BLOCK_BYTES // max(1, count * gallery.shape[1] * 8))
    ids_of = np.arange(count, dtype=np.int64)
    distances, ids = np.empty((len(queries), k), np.int64), np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), rows):
        block = queries[start : start + rows]
        hamming = np.bitwise_count(block[:, None, :] ^ gallery[None, :, :]).sum(axis=2, dtype=np.int64)
        # one key per pair, unique and ordered by (distance, id): no tie is left to argpartition
        keys = hamming * count + ids_of
        if k < count:
            keys = np.take_along_axis(keys, np.argpartition(keys, k - 1, axis=1)[:, :k], axis=1)
        keys = np.sort(keys, axis=1)
        distances[start : start + len(block)], ids[start : start + len(block)] = np.divmod(keys, count)
    return distances, ids


class Binary(CalibratedQuantizer):
    """Sign bits of the (centred, rotated) features; decoded to ±scale per dimension.

    Options: ``center`` (default true: subtract the calibrated mean first; false is
    sentence-transformers' scheme, the sign of the raw value), ``rotate`` (default false) and
    ``seed`` (of the rotation). Before calibration the centre is 0 and the scale 1; a first
    training-mode forward batch calibrates them. No trainable parameters; ``loss`` is 0; in
    training the output is straight-through. The rotation costs ``input_dim²`` floats of memory.

    >>> import torch
    >>> quantizer = Binary(input_dim=2).calibrate(torch.tensor([[0.0, 1.0], [2.0, 3.0]]))
    >>> quantizer.encode(torch.tensor([[[1.5, 1.0]]])).tolist()
    [[[1, 0]]]
    >>> quantizer.decode(torch.tensor([[[1, 0]]])).tolist()
    [[[2.0, 1.0]]]
    """

    name = "binary"

    def __init__(
        self,
        input_dim: int,
        bottleneck_dim: int | None = None,
        center: bool = True,
        rotate: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(input_dim, bottleneck_dim)
        self.center = check_bool(self.name, "center", center)
        self.rotate = check_bool(self.name, "rotate", rotate)
        self.seed = check_int(self.name, "seed", seed, minimum=0)
        self.code_radix = 2
        self.register_buffer("center_", torch.zeros(input_dim))
        self.register_buffer("scale_", torch.ones(input_dim))
        # rebuilt from the seed, so checkpoints need not carry it
        rotation = random_rotation(input_dim, seed) if rotate else None
        self.register_buffer("rotation_", rotation, persistent=False)

    @property
    def bits_per_vector(self) -> float:
        return float(self.input_dim)

    def _turned(self, tokens: torch.Tensor) -> torch.Tensor:
        centred = tokens - self.center_
        return centred @ self.rotation_ if self.rotation_ is not None else centred

    def _fit(self, matrix: torch.Tensor) -> None:
        self.center_.copy_(matrix.mean(dim=0) if self.center else torch.zeros_like(self.center_))
        self.scale_.copy_(self._turned(matrix).abs().mean(dim=0))

    def _codes(self, tokens: torch.Tensor) -> torch.Tensor:
        return (self._turned(tokens) > 0).long()

    def _values(self, codes: torch.Tensor) -> torch.Tensor:
        signed = torch.where(codes > 0, self.scale_, -self.scale_)
        turned_back = signed @ self.rotation_.T if self.rotation_ is not None else signed
        return turned_back + self.center_

    def search(self, gallery_codes: Any, queries: Any, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` gallery vectors nearest each query in Hamming distance: ``(scores, ids)``,
        both ``Q k``; ``scores`` (float32) count the bits that agree (``input_dim`` minus the
        Hamming distance) and descend along each row, equal scores in ascending id.

        ``gallery_codes`` come from ``encode`` (``(N, d)``, ``(b, n, d)``: every vector is one
        gallery item, in order); ``queries`` are features (``(Q, d)`` or ``(b, n, d)``), encoded first.
        """
        gallery = self._check_codes(gallery_codes)
        if gallery.ndim < 2 or gallery.shape[-1] != self.input_dim:
            raise DataError(
                f"{self.name}: gallery_codes must be codes from {self.name}.encode() with {self.input_dim} bits "
                f"per vector (the last axis), got shape {tuple(gallery.shape)}"
            )
        gallery = gallery.reshape(-1, self.input_dim)
        if gallery.numel() and (int(gallery.min()) < 0 or int(gallery.max()) > 1):
            raise DataError(f"{self.name}: gallery_codes must be 0 or 1, got {gallery.min()}…{gallery.max()}")
        k = check_int(self.name, "k", k, minimum=1, maximum=gallery.shape[0])
        query_codes = self.encode(self.feature_tokens(queries)).reshape(-1, self.input_dim)
        distances, ids = hamming_top_k(query_codes.cpu().numpy(), gallery.cpu().numpy(), k)
        return torch.from_numpy(self.input_dim - distances).float(), torch.from_numpy(ids)
