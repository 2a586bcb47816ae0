"""Segmentation scores from confusion matrices, and how much of a codebook a quantizer uses.

Predictions and labels are ``(N, H, W)`` integer class maps; pixels whose label is
``ignore_index`` count nowhere (whatever is predicted there). Everything is counted exactly with
``torch.bincount`` into ``(C, C)`` confusion matrices (rows: label, columns: prediction) and
turned into ratios in float64:

- IoU of class ``c``: ``|P_c ∩ T_c| / |P_c ∪ T_c|`` with ``P_c`` the pixels predicted ``c`` and
  ``T_c`` the pixels labelled ``c``;
- a class is *present* in a set of pixels when it labels or is predicted at one of its
  non-ignored pixels (``|P_c ∪ T_c| > 0``); a class equal to ``ignore_index`` (when that lies in
  ``[0, C)``) is never present. Means of IoU are over present classes only; an absent class has
  no IoU (NaN), not 0.

``SegmentationScores`` accumulates over batches (and over processes under DDP) and gives the
dataset-level ``mean_iou``, ``per_class_iou`` and ``pixel_accuracy`` plus the mean and median
of ``per_sample_iou``.

Agreement with torchmetrics 1.9 (``tests/core/test_training_metrics.py`` checks it):

- ``mean_iou`` is ``JaccardIndex(task="multiclass", num_classes=C, ignore_index=ignore_index,
  average="macro")``: torchmetrics gives weight 0 to classes whose row and column of the
  confusion matrix are both empty and to the ``ignore_index`` class, so its ``zero_division``
  (default 0) does not matter for the macro mean (with ``zero_division=nan`` it gives NaN).
  torchmetrics casts the confusion matrix to float32 first, so the two agree to float32 rounding
  (about 1e-7), while esq's float64 value equals the exact ratio to 1e-12;
- ``per_class_iou`` is ``average="none"`` except for absent classes: NaN here, ``zero_division``
  (0 by default) there;
- ``pixel_accuracy`` is ``MulticlassAccuracy(num_classes=C, average="micro",
  ignore_index=ignore_index)``;
- both give NaN when every pixel is ignored.

>>> import torch
>>> target = torch.tensor([[[0, 0], [1, 255]]])
>>> predictions = torch.tensor([[[0, 1], [1, 1]]])
>>> scores = SegmentationScores(num_classes=3)
>>> scores.update(predictions, target)
>>> result = scores.compute()
>>> result["mean_iou"], result["per_class_iou"], result["pixel_accuracy"]  # class 2 is absent
(0.5, [0.5, 0.5, nan], 0.6666666666666666)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from esq import DataError, check_int


def _check_integer_tensor(name: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor) or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        found = f"{value.dtype} tensor" if isinstance(value, Tensor) else type(value).__name__
        raise DataError(f"`{name}` expected an integer tensor of class indices, got a {found}")
    return value.long()


def _out_of_range(values: Tensor, size: int) -> list[int]:
    """Up to five values outside ``[0, size)``; one host–device synchronisation."""
    bad = (values < 0) | (values >= size)
    return values[bad].unique()[:5].tolist() if bool(bad.any()) else []


def _confusion_matrices(predictions: Tensor, target: Tensor, num_classes: int, ignore_index: int) -> Tensor:
    """``(N, C, C)`` int64 counts per sample: entry ``[n, t, p]`` counts pixels labelled ``t`` predicted ``p``."""
    predictions = _check_integer_tensor("predictions", predictions)
    target = _check_integer_tensor("target", target)
    if predictions.ndim != 3 or predictions.shape != target.shape:
        raise DataError(
            "segmentation scores expect predictions and target of the same shape (N, H, W), got "
            f"{tuple(predictions.shape)} and {tuple(target.shape)}; take argmax over the class dimension of logits"
        )
    valid = target != ignore_index
    for name, values in (("target", target[valid]), ("predictions", predictions[valid])):
        found = _out_of_range(values, num_classes)
        if found:
            raise DataError(
                f"`{name}` must hold classes in [0, {num_classes}) (num_classes) at pixels whose label is not "
                f"ignore_index={ignore_index}; found {found}"
            )
    samples = torch.arange(predictions.shape[0], device=target.device).view(-1, 1, 1).expand_as(target)
    index = (samples[valid] * num_classes + target[valid]) * num_classes + predictions[valid]
    counts = torch.bincount(index, minlength=predictions.shape[0] * num_classes * num_classes)
    return counts.view(predictions.shape[0], num_classes, num_classes)


def _iou_per_class(confusion: Tensor, ignore_index: int) -> Tensor:
    """IoU per class from ``(..., C, C)`` counts, float64, NaN where the class is absent."""
    intersection = confusion.diagonal(dim1=-2, dim2=-1)
    union = confusion.sum(dim=-1) + confusion.sum(dim=-2) - intersection
    present = union > 0
    if 0 <= ignore_index < confusion.shape[-1]:
        present[..., ignore_index] = False
    ratio = intersection.double() / union.double().clamp(min=1)
    return torch.where(present, ratio, math.nan)


def per_sample_iou(predictions: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """Mean IoU of each sample over the classes present in that sample: ``(N,)`` float64.

    For sample ``n``: the mean over its present classes ``c`` (labelled or predicted at one of its
    non-ignored pixels) of ``|P_c ∩ T_c| / |P_c ∪ T_c|``; NaN when all its pixels are ignored.

    The previous tool averaged every sample over all 21 classes, counting 0 for each class absent
    from the sample. A typical image shows two or three classes, so its numbers were dominated by
    those zeros: lower than the segmentation quality, and mostly a count of how many classes an
    image happens to contain. Below, a perfect prediction of an image with 2 of 4 classes scores 1
    here and 0.5 there.

    >>> import torch
    >>> target = torch.tensor([[[0, 0], [3, 3]], [[1, 255], [1, 2]]])
    >>> predictions = torch.tensor([[[0, 0], [3, 3]], [[1, 1], [2, 2]]])
    >>> per_sample_iou(predictions, target, num_classes=4)  # sample 2: (1/2 + 1/2) / 2
    tensor([1.0000, 0.5000], dtype=torch.float64)
    """
    check_int("per_sample_iou", "num_classes", num_classes, minimum=1)
    confusion = _confusion_matrices(predictions, target, num_classes, ignore_index)
    return _iou_per_class(confusion, ignore_index).nanmean(dim=-1)


def _nan_median(values: Tensor) -> float:
    """Median skipping NaN, the mean of the two middle values for an even count (as ``numpy.nanmedian``)."""
    values = values[~values.isnan()]
    return float(torch.quantile(values, 0.5)) if values.numel() else math.nan


class SegmentationScores(Metric):
    """Mean IoU, per-class IoU, pixel accuracy and per-sample IoU, accumulated over batches.

    ``update(predictions, target)`` takes ``(N, H, W)`` class maps (``argmax`` of the logits) and
    labels; ``compute()`` returns a dict of floats over everything seen since the last ``reset``:

    - ``mean_iou``: the mean over present classes (labelled or predicted anywhere in the evaluated
      set) of each class's IoU over the whole set (not a mean of per-image values);
    - ``per_class_iou``: a list of ``num_classes`` IoUs, NaN for absent classes;
    - ``pixel_accuracy``: correct non-ignored pixels / non-ignored pixels;
    - ``sample_iou_mean``, ``sample_iou_median``: mean and median of ``per_sample_iou`` over the
      samples, skipping samples whose pixels were all ignored.
    - ``confusion_matrix``: the ``num_classes × num_classes`` pixel counts (rows: label, columns:
      prediction), as lists of ints.

    Every value is NaN when no pixel was scored. The confusion matrix is summed and the per-sample
    IoUs concatenated across processes, so the result under DDP is that of one process seeing all
    the data (samples that a distributed sampler repeats to pad its last batch count twice).

    >>> import torch
    >>> scores = SegmentationScores(num_classes=2)
    >>> scores.update(torch.tensor([[[0, 1]]]), torch.tensor([[[0, 1]]]))
    >>> scores.update(torch.tensor([[[0, 0]]]), torch.tensor([[[0, 1]]]))
    >>> result = scores.compute()
    >>> result["mean_iou"], result["sample_iou_mean"]  # classes: 2/3 and 1/2; samples: 1 and (1/2 + 0)/2
    (0.5833333333333333, 0.625)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    confusion_matrix: Tensor
    sample_iou: list[Tensor]

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = check_int("SegmentationScores", "num_classes", num_classes, minimum=1)
        self.ignore_index = check_int("SegmentationScores", "ignore_index", ignore_index)
        self.add_state("confusion_matrix", torch.zeros(num_classes, num_classes, dtype=torch.long), "sum")
        self.add_state("sample_iou", [], "cat")

    def update(self, predictions: Tensor, target: Tensor) -> None:
        """Count one batch: ``predictions`` and ``target`` are ``b h w`` class indices."""
        confusion = _confusion_matrices(predictions, target, self.num_classes, self.ignore_index)
        self.confusion_matrix += confusion.sum(dim=0)
        self.sample_iou.append(_iou_per_class(confusion, self.ignore_index).nanmean(dim=-1))

    def _sync_dist(self, dist_sync_fn: Callable = gather_all_tensors, process_group: Any | None = None) -> None:
        # torchmetrics gathers an empty float32 tensor for a rank that saw no batch; the other ranks
        # send float64, and an all-gather of mismatched dtypes returns garbage or hangs.
        if isinstance(self.sample_iou, list) and not self.sample_iou:
            self.sample_iou = [torch.empty(0, dtype=torch.float64, device=self.device)]
        super()._sync_dist(dist_sync_fn, process_group)

    def compute(self) -> dict[str, Any]:
        """``mean_iou``, ``per_class_iou``, ``pixel_accuracy``, ``sample_iou_mean``, ``sample_iou_median``."""
        per_class = _iou_per_class(self.confusion_matrix, self.ignore_index)
        scored = self.confusion_matrix.sum()
        has_samples = isinstance(self.sample_iou, Tensor) or len(self.sample_iou) > 0
        samples = dim_zero_cat(self.sample_iou) if has_samples else torch.empty(0, dtype=torch.float64)
        return {
            "mean_iou": float(per_class.nanmean()),
            "per_class_iou": per_class.tolist(),
            "pixel_accuracy": float(self.confusion_matrix.diagonal().sum()) / float(scored) if scored else math.nan,
            "sample_iou_mean": float(samples.nanmean()),
            "sample_iou_median": _nan_median(samples),
            "confusion_matrix": self.confusion_matrix.tolist(),
        }
