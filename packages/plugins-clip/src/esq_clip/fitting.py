"""Fitting a quantizer alone on fixed embeddings is core's ``esq.fit_quantizer`` (calibration,
then gradient steps for a quantizer with trainable parameters); esq-clip's pipeline reaches it
through this name."""

from __future__ import annotations

from esq import fit_quantizer

__all__ = ["fit_quantizer"]
