"""Fitting a quantizer alone on a feature matrix (no head): what a sweep point, compressed
retrieval and any code that needs a quantizer ready on fixed embeddings do.

Calibrated quantizers (an optional ``calibrate(x)`` method, no gradient: scalar's per-dimension
ranges, binary's centre and rotation) are calibrated first; then a quantizer with trainable
parameters takes ``steps`` Adam steps on its own loss plus the reconstruction error. A quantizer
with no trainable parameters takes no gradient step. This module imports torch only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def fit_quantizer(
    quantizer: Any,
    features: Any,
    steps: int | Iterable[int],
    learning_rate: float,
    progress: Callable[..., Iterable[int]] | None = None,
    description: str = "fitting",
) -> Any:
    """Calibrate ``quantizer`` on ``features`` when it has ``calibrate``, then ``steps`` Adam steps
    (learning rate ``learning_rate``) on ``output.loss`` + MSE(``output.quantized``, ``features``)
    when it has trainable parameters; ``steps`` is a count or an iterable of steps (a range already
    wrapped in a progress display), and a count's steps go through ``progress(items, description,
    total=...)`` when given (``RunContext.progress``). ``features`` is a tensor in a layout the
    quantizer takes (``(1, n, d)`` tokens for a matrix). The quantizer is left in eval mode and
    returned.

    >>> import torch
    >>> class Scale(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.weight = torch.nn.Parameter(torch.zeros(()))
    ...     def forward(self, x):
    ...         from esq import QuantizerOutput
    ...         return QuantizerOutput(quantized=x * self.weight, codes=None, loss=torch.zeros(()))
    >>> fitted = fit_quantizer(Scale(), torch.ones(1, 8, 2), steps=200, learning_rate=0.05)
    >>> round(float(fitted.weight), 2), fitted.training
    (1.0, False)
    """
    import torch

    from esq.validation import check_int, check_number

    if isinstance(steps, int):
        check_int("fit_quantizer", "steps", steps, minimum=0)
    check_number("fit_quantizer", "learning_rate", learning_rate, minimum=0)
    calibrate = getattr(quantizer, "calibrate", None)
    if callable(calibrate):
        with torch.no_grad():
            calibrate(features)
    parameters = [parameter for parameter in quantizer.parameters() if parameter.requires_grad]
    if parameters and steps != 0:
        optimiser = torch.optim.Adam(parameters, lr=learning_rate)
        quantizer.train()
        iterations: Iterable[int] = range(steps) if isinstance(steps, int) else steps
        if progress is not None and isinstance(steps, int):
            iterations = progress(iterations, description, total=steps)
        for _ in iterations:
            output = quantizer(features)
            loss = output.loss + torch.nn.functional.mse_loss(output.quantized, features)
            if loss.requires_grad:
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    quantizer.eval()
    return quantizer
