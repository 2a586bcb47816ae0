"""The ``float16`` quantizer: features rounded to half precision, 16 bits per dimension.

The first baseline a practitioner tries: every value cast to IEEE 754 half precision (11
significant bits, largest finite value 65504) and back; a feature beyond that range is refused
(it would become infinite). The codes are the float16 values themselves, 2 bytes a value.
"""

from __future__ import annotations

from esq_quantizers.raw_floats import RawFloats


class Float16(RawFloats):
    """Half-precision features: ``bits_per_vector = 16 · input_dim``.

    >>> import torch
    >>> quantizer = Float16(input_dim=4)
    >>> quantizer.bits_per_vector, quantizer.compression_ratio(4)
    (64.0, 2.0)
    >>> quantizer.encode(torch.tensor([[[1.0, 0.1, -2.5, 3.0]]])).dtype
    torch.float16
    """

    name = "float16"
    code_dtype = "float16"
