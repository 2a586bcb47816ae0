"""How much of its codebook a quantizer uses over a whole evaluation set: a histogram of codes,
not a mean of per-batch figures.

A quantizer that declares ``code_radix`` (each code is an integer in ``[0, code_radix)``) and
``codes_per_vector`` (the codebooks a vector goes through: rvq's and residual_fsq's levels) is
counted per codebook level; for level ``l`` with ``n_l(k)`` vectors given code ``k`` out of
``N`` vectors:

- ``distinct_codes``: the number of codes with ``n_l(k) > 0``;
- ``codebook_usage``: ``distinct_codes / code_radix``;
- ``dead_codes``: ``code_radix - distinct_codes`` (codes the set never used);
- ``perplexity``: ``exp(-Σ_k p_k log p_k)`` with ``p_k = n_l(k) / N``: the number of equally
  used codes that would carry the same information (at most ``min(N, code_radix)``).

The figures for the quantizer are the means over its levels (one level for vq, simvq, fsq and lfq,
whose code is the whole ``2**bits`` integer, not each bit). Codes of -1 (a level dropped in
training) are not counted.

A batch's usage is lower than the set's (a batch of 8 images cannot use 1024 codes), so a mean of
per-batch figures understates usage and overstates dead codes; the histogram here is exact.

>>> import torch
>>> usage = CodebookUsage(code_radix=4)
>>> usage.update(torch.tensor([[0, 0]]))
>>> usage.update(torch.tensor([[1, 1]]))  # each batch uses 1 code of 4, the set 2
>>> usage.compute()["codebook_usage"], usage.compute()["perplexity"]
(0.5, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from esq import check_int


def code_layout(quantizer: Any) -> tuple[int, int] | None:
    """``(code_radix, levels)`` of a quantizer whose codes can be counted, else ``None``: a
    quantizer that does not declare its ``code_radix``, or whose radix is below 2 (no codebook:
    esq-quantizers' ``identity``, whose "codes" are its float features)."""
    radix = getattr(quantizer, "code_radix", None)
    if isinstance(radix, bool) or not isinstance(radix, int) or radix < 2:
        return None
    levels = getattr(quantizer, "codes_per_vector", 1)
    return radix, levels if isinstance(levels, int) and levels >= 1 else 1


class CodebookUsage(Metric):
    """Counts of each code at each level over everything seen since the last ``reset``.

    ``update(codes)`` takes a quantizer's codes: ``(...)`` integers for one level, ``(..., levels)``
    for several. The counts are kept sparse (the distinct codes of each batch), so a codebook of
    2**24 codes costs memory only for the codes used; across processes they are concatenated.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    ids: list[Tensor]
    counts: list[Tensor]

    def __init__(self, code_radix: int, levels: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.code_radix = check_int("CodebookUsage", "code_radix", code_radix, minimum=1)
        self.levels = check_int("CodebookUsage", "levels", levels, minimum=1)
        self.add_state("ids", [], "cat")
        self.add_state("counts", [], "cat")

    def update(self, codes: Tensor) -> None:
        """Count one batch of codes."""
        flat = codes.detach().reshape(-1, self.levels).long()
        kept = flat >= 0  # before the offsets below, which would make a -1 look like a real code
        offsets = torch.arange(self.levels, device=flat.device) * self.code_radix
        ids, counts = torch.unique((flat + offsets)[kept], return_counts=True)
        self.ids.append(ids)
        self.counts.append(counts)

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None) -> None:
        # torchmetrics gathers an empty float32 tensor for a rank that saw no batch; the other ranks
        # send int64, and an all-gather of mismatched dtypes returns garbage or hangs.
        for name in ("ids", "counts"):
            if isinstance(getattr(self, name), list) and not getattr(self, name):
                setattr(self, name, [torch.empty(0, dtype=torch.long, device=self.device)])
        super()._sync_dist(dist_sync_fn, process_group)

    def per_level(self) -> list[dict[str, float]]:
        """``distinct_codes``, ``codebook_usage``, ``dead_codes``, ``perplexity`` and ``vectors`` of each level."""
        has = isinstance(self.ids, Tensor) or len(self.ids) > 0
        ids = dim_zero_cat(self.ids) if has else torch.empty(0, dtype=torch.long)
        counts = dim_zero_cat(self.counts) if has else torch.empty(0, dtype=torch.long)
        codes, inverse = torch.unique(ids, return_inverse=True)
        totals = torch.zeros(codes.numel(), dtype=torch.float64, device=codes.device)
        totals.scatter_add_(0, inverse, counts.double())
        level_of = torch.div(codes, self.code_radix, rounding_mode="floor")
        figures = []
        for level in range(self.levels):
            level_counts = totals[level_of == level]
            vectors = float(level_counts.sum())
            distinct = int(level_counts.numel())
            entropy = float(torch.special.entr(level_counts / vectors).sum()) if vectors else math.nan
            figures.append(
                {
                    "distinct_codes": float(distinct),
                    "codebook_usage": distinct / self.code_radix,
                    "dead_codes": float(self.code_radix - distinct),
                    "perplexity": math.exp(entropy) if vectors else math.nan,
                    "vectors": vectors,
                }
            )
        return figures

    def compute(self) -> dict[str, Any]:
        """The means over levels of ``codebook_usage``, ``perplexity``, ``dead_codes`` and
        ``distinct_codes``, and ``levels``: each level's figures (``per_level``)."""
        levels = self.per_level()
        means = {
            name: sum(level[name] for level in levels) / len(levels)
            for name in ("codebook_usage", "perplexity", "dead_codes", "distinct_codes")
        }
        return {**means, "code_radix": self.code_radix, "levels": levels}
