"""esq-quantizers: VQ (EMA), FSQ, LFQ, residual VQ and FSQ, SimVQ, and the baselines ``identity``
(float32), ``float16``, ``scalar`` (int8/4/2) and ``binary`` (sign bits, Hamming search) behind
esq's quantizer interface, and bit-packed storage of their codes (``pack``, ``unpack``).

``pack`` and ``unpack`` load on first use, so importing the plugin (``esq list``) does not
import torch.
"""

from typing import Any

__all__ = ["pack", "unpack"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from esq_quantizers import storage

        return getattr(storage, name)
    raise AttributeError(f"module 'esq_quantizers' has no attribute {name!r}")
