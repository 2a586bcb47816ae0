"""Segmentation losses on ``(N, C, H, W)`` logits and ``(N, H, W)`` labels, ignored pixels left out.

``segmentation_loss(name, num_classes, ignore_index=255, **options)`` builds one of:

- ``ce``: cross-entropy, the mean of ``−log p_t`` over non-ignored pixels (``p_t`` the softmax
  probability of the pixel's label);
- ``dice``: ``1 −`` the mean over classes of the soft Dice coefficient (Milletari et al. 2016,
  "V-Net"), option ``smooth`` (``ε``, default 1);
- ``focal``: the multi-class focal loss of Lin et al. 2017 ("Focal Loss for Dense Object
  Detection"), options ``gamma`` (default 2) and ``alpha`` (default ``None``);
- ``combined``: ``ce + dice_weight · dice``, options ``dice_weight`` (default 1) and ``smooth``.

Every loss is an ``nn.Module`` without parameters: picklable, and built from sums, products and
``log_softmax`` only (no ``gather``/``scatter``/``nll_loss``), so that it is deterministic on GPU.
Pixels whose label is ``ignore_index`` count nowhere; a batch with no other pixel gives a zero that
stays in the autograd graph (its gradient is zero), never NaN. Half-precision logits are cast to
float32 first. Labels other than ``ignore_index`` must lie in ``[0, num_classes)``: checking this
costs one host–device synchronisation per call, and an out-of-range label raises ``DataError``
instead of being silently dropped.

>>> import torch
>>> logits = torch.zeros(1, 3, 2, 2)  # uniform over 3 classes
>>> target = torch.tensor([[[0, 1], [2, 255]]])
>>> segmentation_loss("ce", num_classes=3)(logits, target)  # log 3
tensor(1.0986)
>>> segmentation_loss("focal", num_classes=3, gamma=0.0)(logits, target)  # γ = 0 is cross-entropy
tensor(1.0986)
>>> segmentation_loss("dice", num_classes=3)(logits, target)  # each class: 1 − (2·1/3 + 1)/(1 + 1 + 1)
tensor(0.4444)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from esq import ConfigError, DataError, UnknownNameError, check_number, did_you_mean

LOSSES = ("ce", "dice", "focal", "combined")


class _Pixels(NamedTuple):
    """What every loss needs, computed once per call."""

    log_probabilities: Tensor  # (N, C, H, W), float32 or float64
    one_hot: Tensor  # (N, C, H, W) bool, all False at ignored pixels
    valid: Tensor  # (N, H, W) bool, False at ignored pixels


def _pixels(logits: Tensor, target: Tensor, num_classes: int, ignore_index: int) -> _Pixels:
    if not isinstance(logits, Tensor) or logits.ndim != 4 or not logits.is_floating_point():
        raise DataError(f"segmentation losses expect float logits of shape (N, C, H, W), got {_describe(logits)}")
    if logits.shape[1] != num_classes:
        raise DataError(f"logits have {logits.shape[1]} channels but the loss was built for num_classes={num_classes}")
    expected = (logits.shape[0], *logits.shape[2:])
    if not isinstance(target, Tensor) or tuple(target.shape) != expected or target.is_floating_point():
        raise DataError(
            f"segmentation losses expect integer labels of shape {expected} (N, H, W) for logits of shape "
            f"{tuple(logits.shape)}, got {_describe(target)}"
        )
    target = target.long()
    valid = target != ignore_index
    out_of_range = valid & ((target < 0) | (target >= num_classes))
    if bool(out_of_range.any()):
        found = target[out_of_range].unique()[:5].tolist()
        raise DataError(
            f"segmentation labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}; found {found}"
        )
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    classes = torch.arange(num_classes, device=target.device).view(1, num_classes, 1, 1)
    one_hot = (target.unsqueeze(1) == classes) & valid.unsqueeze(1)
    return _Pixels(torch.log_softmax(logits, dim=1), one_hot, valid)


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` over ``valid`` pixels; 0 (in the graph) when there are none, without a sync."""
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp(min=1)


def _label_log_probability(pixels: _Pixels) -> Tensor:
    """``log p_t`` per pixel, ``(N, H, W)``; 0 at ignored pixels."""
    return torch.where(pixels.one_hot, pixels.log_probabilities, 0.0).sum(dim=1)


def _cross_entropy(pixels: _Pixels) -> Tensor:
    return _masked_mean(-_label_log_probability(pixels), pixels.valid)


def _dice(pixels: _Pixels, smooth: float) -> Tensor:
    probabilities = torch.where(pixels.valid.unsqueeze(1), pixels.log_probabilities.exp(), 0.0)
    reduce = (0, 2, 3)
    intersection = torch.where(pixels.one_hot, probabilities, 0.0).sum(dim=reduce)
    probability_mass = probabilities.sum(dim=reduce)
    target_count = pixels.one_hot.sum(dim=reduce).to(probabilities.dtype)
    present = (probability_mass + target_count) > 0
    # Absent classes get a denominator of 1 so that smooth = 0 gives no 0/0 (whose gradient is NaN).
    denominator = torch.where(present, probability_mass + target_count + smooth, 1.0)
    dice = (2 * intersection + smooth) / denominator
    return torch.where(present, 1 - dice, 0.0).sum() / present.sum().clamp(min=1)


def _focal(pixels: _Pixels, gamma: float, class_weights: Tensor | None) -> Tensor:
    label_log_probability = _label_log_probability(pixels)
    losses = -label_log_probability
    if gamma != 0:
        # The clamp guards against rounding that would make 1 − p_t slightly negative.
        losses = (1 - label_log_probability.exp()).clamp(min=0).pow(gamma) * losses
    if class_weights is not None:
        weights = class_weights.to(losses.dtype).view(1, -1, 1, 1)
        losses = torch.where(pixels.one_hot, weights, 0.0).sum(dim=1) * losses
    return _masked_mean(losses, pixels.valid)


class SegmentationLoss(nn.Module):
    """Base class: ``loss(logits, target)`` with logits ``(N, C, H, W)`` and labels ``(N, H, W)``."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ConfigError(f"loss option `num_classes` expected an integer >= 1, got {num_classes!r}")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise ConfigError(f"loss option `ignore_index` expected an integer, got {ignore_index!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def _pixels(self, logits: Tensor, target: Tensor) -> _Pixels:
        return _pixels(logits, target, self.num_classes, self.ignore_index)

    def extra_repr(self) -> str:
        parameters = list(inspect.signature(type(self)).parameters)
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in parameters)


class CrossEntropyLoss(SegmentationLoss):
    """Mean cross-entropy over non-ignored pixels: ``L = −(1/M) Σ_i log p_{i, t_i}``.

    ``p_i = softmax(logits_i)``, ``t_i`` the label of pixel ``i`` and ``M`` the number of
    non-ignored pixels. Equals ``F.cross_entropy(logits, target, ignore_index=ignore_index)``
    whenever ``M > 0`` (that one gives NaN when ``M = 0``).

    >>> import torch
    >>> logits = torch.tensor([[[[2.0]], [[0.0]]]])  # one pixel, two classes
    >>> CrossEntropyLoss(num_classes=2)(logits, torch.tensor([[[0]]]))  # log(1 + e⁻²)
    tensor(0.1269)
    """

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits``: ``b c h w``, ``target``: ``b h w`` → scalar."""
        return _cross_entropy(self._pixels(logits, target))


class DiceLoss(SegmentationLoss):
    """``1 −`` mean soft Dice over classes (Milletari et al. 2016, "V-Net", arXiv:1606.04797).

    For class ``c``, with ``p_{ic}`` the softmax probability and ``t_{ic}`` the one-hot label of
    pixel ``i``, summed over every non-ignored pixel of the batch (not image by image)::

        D_c = (2 Σ_i p_{ic} t_{ic} + ε) / (Σ_i p_{ic} + Σ_i t_{ic} + ε)
        L   = mean over present classes of (1 − D_c)

    A class is *present* when it labels a pixel or has predicted mass ``Σ_i p_{ic} > 0``. Softmax
    probabilities are positive, so in practice every class is present whenever the batch has a
    non-ignored pixel (only a probability that underflows to 0 everywhere drops a class); the rule
    exists so that an all-ignored batch averages over nothing and gives 0. A class that is absent
    from the labels therefore still counts: ``D_c = ε / (Σ_i p_{ic} + ε)``, close to 1 (no loss)
    when the model gives it little mass and close to 0 when the model predicts it where it is not.
    ``smooth`` is ``ε`` (default 1).

    >>> import torch
    >>> target = torch.tensor([[[0, 1]]])
    >>> confident = 50.0 * torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
    >>> float(DiceLoss(num_classes=2)(confident, target)) < 1e-6
    True
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, smooth: float = 1.0) -> None:
        super().__init__(num_classes, ignore_index)
        self.smooth = check_number("loss", "smooth", smooth, minimum=0)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits``: ``b c h w``, ``target``: ``b h w`` → scalar."""
        return _dice(self._pixels(logits, target), self.smooth)


class FocalLoss(SegmentationLoss):
    """Multi-class focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", arXiv:1708.02002).

    ``L = (1/M) Σ_i −α_{t_i} (1 − p_{i, t_i})^γ log p_{i, t_i}`` over the ``M`` non-ignored pixels,
    with ``p_i = softmax(logits_i)`` and ``t_i`` the label of pixel ``i``. ``gamma`` is ``γ``
    (default 2; ``γ = 0`` without ``alpha`` is cross-entropy). ``alpha`` is ``None`` (``α = 1``),
    one number (the same weight for every class, which only scales the loss) or one weight per
    class; the mean stays over pixels (it is not divided by the weights' sum).

    >>> import torch
    >>> logits = torch.tensor([[[[2.0]], [[0.0]]]])  # p_0 = 0.8808
    >>> FocalLoss(num_classes=2)(logits, torch.tensor([[[0]]]))  # (1 − p_0)² · −log p_0
    tensor(0.0018)
    """

    class_weights: Tensor | None

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__(num_classes, ignore_index)
        self.gamma = check_number("loss", "gamma", gamma, minimum=0)
        self.alpha = _check_alpha(alpha, num_classes)
        weights = None if self.alpha is None else torch.tensor(self.alpha, dtype=torch.float64)
        # Not persistent: the weights come from the options, not from a checkpoint.
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits``: ``b c h w``, ``target``: ``b h w`` → scalar."""
        return _focal(self._pixels(logits, target), self.gamma, self.class_weights)


def _check_alpha(alpha: float | Sequence[float] | None, num_classes: int) -> tuple[float, ...] | None:
    if alpha is None:
        return None
    if isinstance(alpha, int | float) and not isinstance(alpha, bool):
        return (check_number("loss", "alpha", alpha, minimum=0),) * num_classes
    if isinstance(alpha, Sequence) and not isinstance(alpha, str) and len(alpha) == num_classes:
        return tuple(check_number("loss", "alpha", weight, minimum=0) for weight in alpha)
    raise ConfigError(
        f"loss option `alpha` expected None, a number or {num_classes} per-class weights (num_classes), got {alpha!r}"
    )


class CombinedLoss(SegmentationLoss):
    """``L = CE + dice_weight · Dice``: see ``CrossEntropyLoss`` and ``DiceLoss`` (``smooth`` is its ``ε``).

    >>> import torch
    >>> logits, target = torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 1], [2, 255]]])
    >>> CombinedLoss(num_classes=3, dice_weight=0.5)(logits, target)  # 1.0986 + 0.5 · 0.4444
    tensor(1.3208)
    """

    def __init__(
        self, num_classes: int, ignore_index: int = 255, dice_weight: float = 1.0, smooth: float = 1.0
    ) -> None:
        super().__init__(num_classes, ignore_index)
        self.dice_weight = check_number("loss", "dice_weight", dice_weight, minimum=0)
        self.smooth = check_number("loss", "smooth", smooth, minimum=0)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """``logits``: ``b c h w``, ``target``: ``b h w`` → scalar."""
        pixels = self._pixels(logits, target)
        return _cross_entropy(pixels) + self.dice_weight * _dice(pixels, self.smooth)


_CLASSES: dict[str, type[SegmentationLoss]] = {
    "ce": CrossEntropyLoss,
    "dice": DiceLoss,
    "focal": FocalLoss,
    "combined": CombinedLoss,
}


def segmentation_loss(name: str, num_classes: int, ignore_index: int = 255, **options: Any) -> SegmentationLoss:
    """The loss called ``name`` (one of ``ce``, ``dice``, ``focal``, ``combined``) with its options.

    >>> segmentation_loss("focal", num_classes=21, gamma=1.0)
    FocalLoss(num_classes=21, ignore_index=255, gamma=1.0, alpha=None)
    >>> segmentation_loss("dice", num_classes=21, gama=1.0)
    Traceback (most recent call last):
    esq.errors.UnknownNameError: unknown option 'gama' for segmentation loss 'dice'; options: smooth
    """
    if name not in _CLASSES:
        raise UnknownNameError(
            f"unknown segmentation loss {name!r}{did_you_mean(name, LOSSES)}; choose one of {', '.join(LOSSES)}"
        )
    loss_class = _CLASSES[name]
    accepted = [p for p in inspect.signature(loss_class).parameters if p not in ("num_classes", "ignore_index")]
    for option in options:
        if option not in accepted:
            raise UnknownNameError(
                f"unknown option {option!r} for segmentation loss {name!r}{did_you_mean(option, accepted)}; "
                f"options: {', '.join(accepted) or 'none'}"
            )
    return loss_class(num_classes, ignore_index, **options)
