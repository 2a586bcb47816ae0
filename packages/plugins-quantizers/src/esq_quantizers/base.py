"""What every esq quantizer shares: projection into and out of the bottleneck, the two input
layouts, input checks, usage statistics, bits and compression ratio, and ``options`` (each
constructor parameter read back from the attribute of its name, ``esq.WithOptions``).

A subclass stores each of its constructor's parameters under its own name, sets
``codes_per_vector`` and ``code_radix`` (each vector's code is ``codes_per_vector`` integers in
``[0, code_radix)``) and implements ``_quantize`` (training path, straight-through) and
``_lookup`` (codes to bottleneck vectors). In eval mode ``forward`` returns ``decode(encode(x))``
exactly.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from einops import rearrange
from torch import nn

from esq import ConfigError, DataError, QuantizerOutput, WithOptions, check_int

# The most codes one codebook may hold: the libraries keep every entry in memory (FSQ and LFQ their
# implicit codebooks too), and usage statistics count every code.
MAX_CODEBOOK_SIZE = 2**24


def check_codebook_size(owner: str, what: str, entries: int) -> int:
    """``entries`` if a codebook of that many codes is one esq can hold, else a ``ConfigError``
    saying which option (``what``) made it so large.

    >>> check_codebook_size("fsq", "levels [8, 5, 5]", 200)
    200
    >>> check_codebook_size("fsq", "levels [2, 1099511627776]", 2**41)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    esq.errors.ConfigError: fsq: levels [2, 1099511627776] make a codebook of 2199023255552 codes; at most ...
    """
    if entries > MAX_CODEBOOK_SIZE:
        raise ConfigError(
            f"{owner}: {what} make a codebook of {entries} codes; at most {MAX_CODEBOOK_SIZE} (2**24) are supported "
            "(the library holds every code in memory): choose fewer bits"
        )
    return entries


def pick(options: dict[str, Any], *names: str) -> dict[str, Any]:
    """The ``names`` of ``options``, to pass on to the library class."""
    return {name: options[name] for name in names}


class BottleneckQuantizer(WithOptions, nn.Module):
    """``(b, n, input_dim)`` tokens or ``(b, input_dim, h, w)`` maps in, the same shape out."""

    name = "quantizer"
    codes_per_vector = 1
    code_radix = 1

    def __init__(self, input_dim: int, bottleneck_dim: int) -> None:
        super().__init__()
        self.input_dim = check_int(self.name, "input_dim", input_dim, minimum=1)
        self.bottleneck_dim = check_int(self.name, "bottleneck_dim", bottleneck_dim, minimum=1)
        same = input_dim == bottleneck_dim
        self.project_in = nn.Identity() if same else nn.Linear(input_dim, bottleneck_dim)
        self.project_out = nn.Identity() if same else nn.Linear(bottleneck_dim, input_dim)

    # -- what subclasses provide -------------------------------------------------------------
    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z``: ``(b, n, bottleneck_dim)`` -> quantized ``z``, codes ``(b, n[, q])``, loss."""
        raise NotImplementedError

    def _lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(b, n[, q])`` -> bottleneck vectors ``(b, n, bottleneck_dim)``."""
        raise NotImplementedError

    # -- the interface -----------------------------------------------------------------------
    @property
    def bits_per_vector(self) -> float:
        """Exact information per vector: ``codes_per_vector · log2(code_radix)``."""
        return self.codes_per_vector * math.log2(self.code_radix)

    def compression_ratio(self, feature_dim: int) -> float:
        """``feature_dim × 32 / bits_per_vector``: float32 features against their codes."""
        return feature_dim * 32 / self.bits_per_vector

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(x) or x.ndim not in (3, 4):
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise DataError(
                f"{self.name}: expected (b, n, {self.input_dim}) tokens or (b, {self.input_dim}, h, w) maps, "
                f"got {shape}"
            )
        if x.numel() == 0:
            raise DataError(f"{self.name}: the features are empty (shape {tuple(x.shape)})")
        got = x.shape[-1] if x.ndim == 3 else x.shape[1]
        if got != self.input_dim:
            where = "last" if x.ndim == 3 else "channel (second)"
            raise DataError(
                f"{self.name}: expected feature dimension {self.input_dim} in the {where} axis, got {got} "
                f"(shape {tuple(x.shape)}); build the quantizer with input_dim={got} or fix the features"
            )
        # One reduction finds NaN or Inf (they survive a sum); only then the exact, costlier check,
        # since a sum of huge finite values can overflow too.
        if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():
            raise DataError(f"{self.name}: the features contain NaN or infinite values")
        return x.float() if x.ndim == 3 else rearrange(x.float(), "b d h w -> b (h w) d")

    def _as_maps(self, tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return tokens if like.ndim == 3 else rearrange(tokens, "b (h w) d -> b d h w", h=like.shape[2])

    def _codes_layout(self, codes: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return codes if like.ndim == 3 else rearrange(codes, "b (h w) ... -> b h w ...", h=like.shape[2])

    @contextlib.contextmanager
    def _no_kmeans_init(self) -> Iterator[None]:
        """Outside training, codebooks waiting for k-means initialisation (``initted`` False)
        must not take it from this batch (a validation sanity check, say): hold them as
        initialised while the library runs, and put the flag back afterwards."""
        waiting = [m for m in self.modules() if isinstance(getattr(m, "initted", None), torch.Tensor) and not m.initted]
        for module in waiting:
            module.initted.fill_(True)
        try:
            yield
        finally:
            for module in waiting:
                module.initted.fill_(False)

    def _quantize_outside_training(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with self._no_kmeans_init():
            return self._quantize(z)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes: ``(b, n[, q])`` for tokens, ``(b, h, w[, q])`` for maps. Changes no state:
        the library runs in eval mode, without gradients and without k-means initialisation."""
        training = self.training
        self.eval()
        try:
            with torch.no_grad():
                _, codes, _ = self._quantize_outside_training(self.project_in(self._tokens(x)))
        finally:
            self.train(training)
        return self._codes_layout(codes.long(), x)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes from ``encode`` back to features in the input's layout."""
        extra = 1 if self.codes_per_vector > 1 else 0
        if codes.ndim == 3 + extra:
            flat = rearrange(codes, "b h w ... -> b (h w) ...")
            return rearrange(self.project_out(self._lookup(flat)), "b (h w) d -> b d h w", h=codes.shape[1])
        return self.project_out(self._lookup(codes))

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Quantize ``x``. In training the output carries gradients to ``x`` (straight-through),
        ``loss`` is the library's and ``stats`` is empty (training reads none, and counting codes
        costs a sync with the device each step); in eval the output is ``decode(encode(x))``,
        ``loss`` 0 and ``stats`` the batch's codebook usage (``usage_stats``)."""
        z = self.project_in(self._tokens(x))
        if self.training:
            quantized, codes, loss = self._quantize(z)
        else:  # eval: the codes' own vectors, and no training loss (the libraries differ there)
            _, codes, _ = self._quantize_outside_training(z)
            quantized, loss = self._lookup(codes), z.new_zeros(())
        stats = {} if self.training else usage_stats(codes, self.code_radix)
        output = self._as_maps(self.project_out(quantized), x)
        return QuantizerOutput(output, self._codes_layout(codes.long(), x), loss.reshape(()), stats)


def usage_stats(codes: torch.Tensor, codebook_size: int) -> dict[str, float]:
    """Codebook usage in this batch: fraction of codes used, perplexity, dead (unused) codes.

    With several codes per vector (residual levels), each level counts separately and the
    figures are averaged over levels. Codes of -1 (levels dropped in training) are ignored.
    One ``bincount`` over all levels and one transfer of the three figures.

    >>> usage_stats(torch.tensor([[0, 0, 1, 1]]), codebook_size=4)
    {'codebook_usage': 0.5, 'perplexity': 2.0, 'dead_codes': 2.0}
    """
    levels = codes.shape[-1] if codes.ndim == 3 else 1
    flat = codes.detach().reshape(-1, levels).long()
    kept = flat >= 0  # before the offsets below, which would make a -1 look like a real code
    offsets = torch.arange(levels, device=flat.device) * codebook_size
    counts = torch.bincount((flat + offsets)[kept], minlength=levels * codebook_size)
    counts = counts.reshape(levels, codebook_size).float()
    totals = counts.sum(dim=1)
    present = totals > 0
    if not bool(present.all()):
        if not bool(present.any()):
            return {"codebook_usage": 0.0, "perplexity": 0.0, "dead_codes": float(codebook_size)}
        counts, totals = counts[present], totals[present]
    entropy = torch.special.entr(counts / totals[:, None]).sum(dim=1)
    used = (counts > 0).sum(dim=1).float()
    usage, perplexity, mean_used = torch.stack(
        [(used / codebook_size).mean(), entropy.exp().mean(), used.mean()]
    ).tolist()
    return {"codebook_usage": usage, "perplexity": perplexity, "dead_codes": codebook_size - mean_used}
