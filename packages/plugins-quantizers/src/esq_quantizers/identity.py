"""The ``identity`` quantizer: features pass unchanged, stored as float32 (32 bits per dimension).

A baseline with the same interface as the real quantizers. (Training's ``quantizer="none"``
means no quantizer at all; ``identity`` is a quantizer that changes nothing.)
"""

from __future__ import annotations

from esq_quantizers.raw_floats import RawFloats


class Identity(RawFloats):
    """No quantization; the "codes" are the float32 features themselves."""

    name = "identity"
    code_dtype = "float32"
