"""``check_backbone``: the protocol of backbones (needs torch)."""

from __future__ import annotations

from typing import Any

from esq.components import Backbone
from esq.specs import BackboneSpec
from esq.testing.common import build, ensure, expect_rejected, rebuild


def check_backbone(spec: BackboneSpec, image_size: int = 32, **options: Any) -> None:
    """Check a backbone built as ``spec.factory(**options)`` (pass ``weights="none"``).

    ``layers()`` names taps; ``features`` returns one ``(N, C, H, W)`` or ``(N, T, D)`` tensor
    per requested layer, without autograd history, the same in eval mode and after a parent
    module calls ``.train()`` (frozen means frozen); an unknown layer is an ``EsqError``; a
    rebuild from ``options`` under the same seed gives the same features.
    """
    import torch

    torch.manual_seed(0)
    backbone = build(spec, options, Backbone)
    layers = backbone.layers()
    ensure(
        isinstance(layers, list) and layers and all(isinstance(n, str) for n in layers),
        f"{spec.name}: layers() must return a non-empty list of names",
    )
    ensure(
        isinstance(backbone.feature_dim, int) and backbone.feature_dim > 0,
        f"{spec.name}: feature_dim must be a positive int",
    )
    ensure(callable(backbone.preprocess), f"{spec.name}: preprocess must be callable")
    images = torch.rand(2, 3, image_size, image_size, generator=torch.Generator().manual_seed(1))
    features = backbone.features(images, layers)
    ensure(
        isinstance(features, dict) and list(features) == layers,
        f"{spec.name}: features() must map each requested layer, in order",
    )
    for layer, tensor in features.items():
        ensure(
            torch.is_tensor(tensor) and tensor.ndim in (3, 4) and tensor.shape[0] == 2,
            f"{spec.name}: layer {layer!r} gave shape {tuple(getattr(tensor, 'shape', ()))}, "
            "expected (N, C, H, W) or (N, T, D)",
        )
        ensure(not tensor.requires_grad, f"{spec.name}: layer {layer!r} features carry autograd history")
    first = layers[0]
    parent = torch.nn.Sequential(backbone)
    parent.train()
    ensure(
        torch.equal(backbone.features(images, [first])[first], features[first]),
        f"{spec.name}: features change when a parent module calls .train(); a frozen backbone must stay in eval mode",
    )
    expect_rejected(spec.name, "an unknown layer name", lambda: backbone.features(images, ["no_such_layer"]))
    torch.manual_seed(2)
    one = build(spec, options, Backbone)
    torch.manual_seed(2)
    two = rebuild(spec, one, Backbone)
    ensure(
        torch.equal(one.features(images, [first])[first], two.features(images, [first])[first]),
        f"{spec.name}: a backbone rebuilt from its `options` under the same seed gives other features",
    )
