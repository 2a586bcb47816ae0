"""``SegmentationModule``: the Lightning module of ``esq run squeeze`` and ``esq run baseline``.

Its hyperparameters describe it completely (backbone name and options, quantizer name and
options, classes, loss, data settings), so a checkpoint rebuilds the model with no other input
(``esq.load_checkpoint``). The frozen backbone runs without autograd: only the quantizer, the
adapters and the head keep activations for the backward pass.

Logged: ``train/loss`` (= segmentation loss + ``vq_loss_weight`` × quantizer loss),
``train/segmentation_loss``, ``train/quantizer_loss``; on ``val/`` and ``test/``: ``loss``,
``mean_iou``, ``pixel_accuracy``, ``sample_iou_mean``, ``sample_iou_median``, and with a
quantizer that declares its ``code_radix`` ``codebook_usage``, ``perplexity`` and ``dead_codes``
over the whole split (``codebook_usage.CodebookUsage``: a histogram of codes, not a mean of
batches); ``bits_per_vector`` and ``compression_ratio`` once per evaluation. After ``test``,
``test_report`` holds what a log cannot: per-class IoU, the confusion matrix, usage per level.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from esq import EsqError
from esq.builtin.training import NO_QUANTIZER, require_segmentation_backbone
from esq.builtin.training.codebook_usage import CodebookUsage, code_layout
from esq.builtin.training.losses import segmentation_loss
from esq.builtin.training.model import SqueezeModel
from esq.builtin.training.segmentation_metrics import SegmentationScores


class TrainingError(EsqError):
    """Training cannot go on (a NaN loss); the message names the step and the likely cause."""


def build_model(hparams: dict[str, Any], plugins: Any, *, pretrained: bool = True) -> SqueezeModel:
    """The network ``hparams`` describe, from the components of ``plugins``; ``pretrained=False``
    builds the backbone with random weights (a checkpoint's state dict then fills them)."""
    options = dict(hparams["backbone_options"])
    if not pretrained:
        options["weights"] = "none"
    require_segmentation_backbone(plugins.registry("backbones"), hparams["backbone"])
    backbone = plugins.registry("backbones").create(hparams["backbone"], num_classes=hparams["num_classes"], **options)
    quantizer = None
    if hparams["quantizer"] != NO_QUANTIZER:
        quantizer = plugins.registry("quantizers").create(
            hparams["quantizer"], input_dim=int(backbone.feature_dim), **hparams["quantizer_options"]
        )
    return SqueezeModel(
        backbone,
        quantizer,
        encoder_adapter=hparams["encoder_adapter"],
        decoder_adapter=hparams["decoder_adapter"],
        backbone_name=hparams["backbone"],
    )


class SegmentationModule(L.LightningModule):
    """A frozen backbone, an optional quantizer and a trainable head, trained on segmentation."""

    def __init__(
        self,
        *,
        backbone: str,
        num_classes: int,
        backbone_options: dict[str, Any] | None = None,
        quantizer: str = NO_QUANTIZER,
        quantizer_options: dict[str, Any] | None = None,
        encoder_adapter: bool = False,
        decoder_adapter: bool = False,
        loss: str = "ce",
        loss_options: dict[str, Any] | None = None,
        lr: float = 1e-4,
        vq_loss_weight: float = 0.1,
        ignore_index: int = 255,
        class_names: list[str] | None = None,
        data: dict[str, Any] | None = None,
        pretrained: bool = True,
        plugins: Any = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["pretrained", "plugins"])
        self.hparams.backbone_options = dict(backbone_options or {})
        self.hparams.quantizer_options = dict(quantizer_options or {})
        self.hparams.loss_options = dict(loss_options or {})
        self.hparams.class_names = list(class_names or [f"class_{i}" for i in range(num_classes)])
        self.hparams.data = dict(data or {})
        if plugins is None:
            raise TypeError("SegmentationModule needs plugins= (esq.load_plugins()), which provide its components")
        self.model = build_model(dict(self.hparams), plugins, pretrained=pretrained)
        self.loss = segmentation_loss(loss, num_classes, ignore_index, **self.hparams.loss_options)
        self.scores = torch.nn.ModuleDict(
            {stage: SegmentationScores(num_classes, ignore_index) for stage in ("val", "test")}
        )
        layout = code_layout(self.model.quantizer)
        self.usage = (
            torch.nn.ModuleDict({stage: CodebookUsage(*layout) for stage in ("val", "test")}) if layout else None
        )
        self.test_report: dict[str, Any] = {}

    @property
    def feature_dim(self) -> int:
        return int(self.model.backbone.feature_dim)

    @property
    def bits_per_vector(self) -> float:
        """Bits per feature vector the head reads: the quantizer's, or 32 per float dimension."""
        quantizer = self.model.quantizer
        return float(quantizer.bits_per_vector) if quantizer is not None else 32.0 * self.feature_dim

    @property
    def compression_ratio(self) -> float:
        return 32.0 * self.feature_dim / self.bits_per_vector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes, H, W)`` for uint8 or float ``(N, 3, H, W)`` images."""
        return self.model(self.model.backbone.preprocess(images))[0]

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class ids ``(N, H, W)``."""
        return self(images).argmax(dim=1)

    def _run_batch(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, Any, torch.Tensor]:
        images, masks = batch
        logits, output = self.model(self.model.backbone.preprocess(images))
        return logits, output, masks

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        logits, output, masks = self._run_batch(batch)
        segmentation = self.loss(logits, masks)
        quantizer_loss = output.loss if output is not None else torch.zeros((), device=logits.device)
        loss = segmentation + self.hparams.vq_loss_weight * quantizer_loss
        if not torch.isfinite(loss):
            raise TrainingError(self._diverged(batch[0], segmentation, quantizer_loss))
        size = masks.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/segmentation_loss", segmentation, batch_size=size)
        self.log("train/quantizer_loss", quantizer_loss, batch_size=size)
        return loss

    def _diverged(self, images: torch.Tensor, segmentation: torch.Tensor, quantizer_loss: torch.Tensor) -> str:
        where = f"loss is not finite at step {self.global_step} (epoch {self.current_epoch})"
        if images.is_floating_point() and not bool(torch.isfinite(images).all()):
            cause = "the input batch holds NaN or infinite pixels; check the dataset's images"
        elif not bool(torch.isfinite(quantizer_loss)):
            cause = (
                f"the quantizer's loss diverged ({float(quantizer_loss.detach())}); lower lr (now {self.hparams.lr:g}) "
                f"or vq_loss_weight (now {self.hparams.vq_loss_weight:g})"
            )
        else:
            cause = (
                f"the segmentation loss diverged ({float(segmentation.detach())}); lower lr (now {self.hparams.lr:g}), "
                "or use precision=32-true if training in 16-bit"
            )
        return f"{where}: {cause}"

    def _evaluate(self, stage: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        logits, output, masks = self._run_batch(batch)
        self.scores[stage].update(logits.argmax(dim=1), masks)
        self.log(f"{stage}/loss", self.loss(logits, masks), batch_size=masks.shape[0], sync_dist=True)
        if output is not None and self.usage is not None:
            self.usage[stage].update(output.codes)

    def _log_scores(self, stage: str) -> None:
        scores = self.scores[stage].compute()
        for name in ("mean_iou", "pixel_accuracy", "sample_iou_mean", "sample_iou_median"):
            self.log(f"{stage}/{name}", float(scores[name]), sync_dist=True)  # equal on every process
        usage = self.usage[stage].compute() if self.usage is not None else None
        for name in ("codebook_usage", "perplexity", "dead_codes") if usage else ():
            self.log(f"{stage}/{name}", float(usage[name]), sync_dist=True)
        self.log(f"{stage}/bits_per_vector", self.bits_per_vector, sync_dist=True)
        self.log(f"{stage}/compression_ratio", self.compression_ratio, sync_dist=True)
        if stage == "test":
            self.test_report = {"scores": scores, "usage": usage}
        self.scores[stage].reset()
        if self.usage is not None:
            self.usage[stage].reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        self._evaluate("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_scores("val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        self._evaluate("test", batch)

    def on_test_epoch_end(self) -> None:
        self._log_scores("test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        parameters = self.model.trainable_parameters()
        if not parameters:
            raise TrainingError("nothing to train: the backbone has no trainable head and no quantizer was given")
        return torch.optim.Adam(parameters, lr=self.hparams.lr)
