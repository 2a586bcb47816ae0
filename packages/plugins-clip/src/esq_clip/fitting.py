"""Fitting a quantizer alone on fixed embeddings (no head): what compressed retrieval needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def fit_quantizer(quantizer: Any, features: Any, steps: int | Iterable[int], learning_rate: float) -> None:
    """``steps`` Adam steps (a count, or an iterable of them, e.g. wrapped in a progress display)
    on the quantizer's own loss plus the reconstruction error of ``features``; the quantizer is
    left in eval mode."""
    import torch

    parameters = [p for p in quantizer.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(parameters, lr=learning_rate) if parameters else None
    quantizer.train()
    for _ in range(steps) if isinstance(steps, int) else steps:
        output = quantizer(features)
        loss = output.loss + torch.nn.functional.mse_loss(output.quantized, features)
        if optimiser is not None and loss.requires_grad:
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    quantizer.eval()
