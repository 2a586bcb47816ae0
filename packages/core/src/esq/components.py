"""What each kind of component must offer. Protocols only: core does not import torch here.

Every component also exposes ``options``: the resolved keyword options it was built with, so
``spec.factory(**component.options)`` rebuilds an equivalent component (``esq.testing`` checks
this round trip).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class MetricResult:
    """A metric's value and the details behind it (KID's std, sampled pairs, CIs...)."""

    value: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QuantizerOutput:
    """``quantized`` has the input's shape; ``loss`` is one scalar tensor; ``stats`` holds
    floats such as ``codebook_usage``, ``perplexity`` and ``dead_codes``."""

    quantized: Any
    codes: Any
    loss: Any
    stats: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Backbone(Protocol):
    """A frozen network whose layers can be tapped (an ``nn.Module``).

    ``features(images, layers)`` returns ``{layer: tensor}`` with ``(N, C, H, W)`` maps or
    ``(N, T, D)`` tokens, without autograd history; segmentation backbones also return logits
    from ``forward(images)``. ``esq.builtin.pooling`` turns either into one vector per image. (esq's own
    backbones also take layer indices and ``batch_size=``; pipelines pass names.)
    """

    options: dict[str, Any]
    feature_dim: int
    preprocess: Callable[[Any], Any]

    def layers(self) -> list[str]: ...

    def features(self, images: Any, layers: Sequence[str]) -> dict[str, Any]: ...


@runtime_checkable
class Quantizer(Protocol):
    """Squeezes features of ``input_dim`` through a discrete bottleneck (an ``nn.Module``).

    Takes ``(b, n, d)`` tokens or ``(b, d, h, w)`` maps and returns the same shape.

    Two optional methods (not required members; callers test with ``hasattr``):

    - ``calibrate(x)``: fits the quantizer's statistics (ranges, centre, rotation) on training
      features, without gradient, and returns the quantizer. Code that fits quantizers calls it
      before any gradient step; a quantizer that has it and is used without it calibrates itself
      on its first training-mode forward batch. Eval-mode forwards and ``encode`` never calibrate.
    - ``search(gallery_codes, queries, k) -> (scores, indices)``: top-``k`` search in the code
      domain (``binary``: Hamming distance over packed bits); ``queries`` are features, encoded
      first; both results ``Q k``, scores descending, equal scores in ascending index. A pipeline
      that retrieves uses it when present, else decodes the gallery and searches exactly.
    """

    options: dict[str, Any]
    bits_per_vector: float

    def forward(self, x: Any) -> QuantizerOutput: ...

    def encode(self, x: Any) -> Any: ...

    def decode(self, codes: Any) -> Any: ...

    def compression_ratio(self, feature_dim: int) -> float: ...


@runtime_checkable
class Metric(Protocol):
    """Similarity: ``(x: N×d1, y: N×d2)`` paired rows. Distribution: ``(reference: N×d, other: M×d)``."""

    options: dict[str, Any]

    def __call__(self, x: Any, y: Any) -> MetricResult: ...


@runtime_checkable
class Degradation(Protocol):
    """Degrades image batches (uint8 or float, ``(N, C, H, W)``), deterministically for a seed.

    Optional ``level_name`` and ``level_unit`` (strings) say what a level is, for plots and
    results (``blur σ``, ``px``); without them a level is called ``level``.
    """

    options: dict[str, Any]
    levels: Sequence[float]

    def apply(self, images: Any, level: float, seed: int) -> Any: ...


@runtime_checkable
class Retriever(Protocol):
    """Top-k search over indexed keys; exact unless its spec says otherwise."""

    options: dict[str, Any]

    def index(self, keys: Any) -> Retriever: ...

    def search(self, queries: Any, k: int) -> tuple[Any, Any]: ...
