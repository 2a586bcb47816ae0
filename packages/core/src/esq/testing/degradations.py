"""``check_degradation``: the protocol of image degradations (needs torch)."""

from __future__ import annotations

import itertools
from typing import Any

from esq.components import Degradation
from esq.specs import DegradationSpec
from esq.testing.common import build, ensure, rebuild


def _images() -> Any:
    """A smooth uint8 test batch: gradients and a square, so blur and noise both show."""
    import torch

    ramp = torch.linspace(0, 255, 32)
    image = torch.stack([ramp.expand(32, 32), ramp.expand(32, 32).T, torch.full((32, 32), 128.0)])
    image[:, 8:24, 8:24] = 255 - image[:, 8:24, 8:24]
    return torch.stack([image, image.flip(-1)]).round().to(torch.uint8)


def check_degradation(spec: DegradationSpec, **options: Any) -> None:
    """Check a degradation built as ``spec.factory(**options)``.

    ``levels`` is non-empty; ``apply`` keeps shape and dtype for uint8 and float batches, leaves
    its input alone, repeats under a seed, changes the image more as the level grows (mild to
    severe), and a rebuild from ``options`` gives the same images; ``level_name`` and
    ``level_unit``, where given, are strings.
    """
    import torch

    degradation = build(spec, options, Degradation)
    levels = list(degradation.levels)
    ensure(len(levels) > 0, f"{spec.name}: levels must not be empty")
    for attribute in ("level_name", "level_unit"):
        value = getattr(degradation, attribute, "")
        ensure(isinstance(value, str), f"{spec.name}: {attribute} must be a string, got {value!r}")
    images = _images()
    original = images.clone()
    change = []
    for level in levels:
        out = degradation.apply(images, level, seed=0)
        ensure(
            out.shape == images.shape and out.dtype == images.dtype,
            f"{spec.name}: level {level} gave {tuple(out.shape)} {out.dtype}, "
            f"expected {tuple(images.shape)} {images.dtype}",
        )
        ensure(torch.equal(images, original), f"{spec.name}: apply modified its input")
        ensure(
            torch.equal(out, degradation.apply(images, level, seed=0)),
            f"{spec.name}: level {level} is not repeatable under one seed",
        )
        change.append((out.float() - images.float()).abs().mean().item())
    ensure(
        all(b >= a - 0.5 for a, b in itertools.pairwise(change)),
        f"{spec.name}: levels {levels} must go from mild to severe; mean absolute change per level: {change}",
    )
    floats = images.float() / 255
    out = degradation.apply(floats, levels[-1], seed=0)
    ensure(
        out.shape == floats.shape and out.dtype == floats.dtype,
        f"{spec.name}: float input gave {out.dtype} {tuple(out.shape)}",
    )
    ensure(
        torch.equal(
            rebuild(spec, degradation, Degradation).apply(images, levels[-1], seed=0),
            degradation.apply(images, levels[-1], seed=0),
        ),
        f"{spec.name}: a degradation rebuilt from its `options` gives other images",
    )
