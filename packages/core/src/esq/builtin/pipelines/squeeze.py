"""``esq run squeeze`` and ``esq run baseline``: train a segmentation head, with or without a
quantizer between the frozen backbone and the head, with Lightning; report IoU, bits per vector
and compression ratio on the test split.

The options keep the previous tools' names (``squeeze.py``, ``train_baseline.py``): ``model``,
``quantizer_type``, ``codebook_size``, ``bottleneck_dim``, ``num_quantizers``, ``epochs``,
``batch_size``, ``lr``, ``vq_loss_weight``, ``loss_type``, ``dataset``, ``data_path``,
``experiment_name``, ``subset_size``. Lightning's own (``accelerator``, ``devices``,
``strategy``, ``num_nodes``, ``precision``) pass through, checked by Lightning before the run
directory exists. Nothing here imports torch until a check or a run starts.

An option that another option's value makes meaningless is refused, not ignored: ``data_path``
with the synthetic dataset, ``synthetic_size`` with a dataset of files, ``test_fraction`` with
Oxford-IIIT Pet (its test split is ``test.txt``), ``project_name``/``task_name`` without the
``mlflow`` logger, and the quantizer's options or ``vq_loss_weight`` with ``quantizer = "none"``.
Those options default to ``None`` for that reason ("not given"); the help says what ``None`` means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from esq import ConfigError, PipelineConfig, Results, RunContext, check_number
from esq.builtin.compat import backbone_name, refuse_clearml, run_name
from esq.builtin.pipelines.components import check_loggers, check_loss, check_quantizer, check_segmentation_backbone
from esq.builtin.training import NO_QUANTIZER

SYNTHETIC_SIZE = 96
TEST_FRACTION = 0.1
PROJECT_NAME = "esq"
BOTTLENECK_DIM = 64
VQ_LOSS_WEIGHT = 0.1


def positive_finite(value: Any) -> bool:
    """``value`` is a number (not a bool) above 0 and finite: what a learning rate must be."""
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0 and math.isfinite(value)


@dataclass
class BaselineConfig(PipelineConfig):
    """Options of ``esq run baseline`` (and the training options of ``esq run squeeze``)."""

    model: str = field(
        default="tiny_cnn",
        metadata={"help": "segmentation backbone (esq list backbones); vit = vit_b_32, deeplab = deeplabv3_resnet50"},
    )
    backbone_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "e.g. {weights = 'default'} for pretrained weights"}
    )
    experiment_name: str = field(default="", metadata={"help": "the run's name (same as name)"})
    dataset: Literal["synthetic", "folder", "oxford_pet"] = "synthetic"
    data_path: str | None = field(
        default=None, metadata={"help": "folder (images/, masks/) or Oxford-IIIT Pet root; needs --dataset"}
    )
    image_size: int = 64
    num_classes: int | None = field(default=None, metadata={"help": "required for a folder dataset"})
    synthetic_size: int | None = field(
        default=None, metadata={"help": f"images in the synthetic set; None: {SYNTHETIC_SIZE}"}
    )
    subset_size: int | None = None
    val_fraction: float = 0.1
    test_fraction: float | None = field(
        default=None, metadata={"help": f"None: {TEST_FRACTION}; oxford_pet's test split is test.txt"}
    )
    num_workers: int = 0
    epochs: int = 10
    batch_size: int = 4
    lr: float = 1e-4
    loss_type: Literal["ce", "dice", "focal", "combined"] = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"], metadata={"option": "logger"})
    resume: str | None = field(default=None, metadata={"help": "a last.ckpt to continue training from"})
    project_name: str | None = field(
        default=None, metadata={"help": f"MLflow experiment (with loggers = [..., 'mlflow']); None: {PROJECT_NAME!r}"}
    )
    task_name: str = field(default="", metadata={"help": "MLflow run name; '' = the run directory's name"})
    use_clearml: bool = field(default=False, metadata={"help": "not supported: use the mlflow logger"})

    def __post_init__(self) -> None:
        self.name = run_name(self.name, self.experiment_name)
        super().__post_init__()
        self.model = backbone_name(self.model)
        for option in ("epochs", "batch_size", "num_nodes", "image_size"):
            if getattr(self, option) < 1:
                raise ValueError(f"{option} must be at least 1, got {getattr(self, option)}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be at least 0, got {self.num_workers}")
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, int | float)
            or not (self.lr > 0 and math.isfinite(self.lr))
        ):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")

    def data_settings(self) -> dict[str, Any]:
        """What ``open_segmentation`` takes, as stored in checkpoints."""
        return {
            "dataset": self.dataset,
            "data_path": self.data_path,
            "image_size": self.image_size,
            "seed": self.seed,
            "num_classes": self.num_classes,
            "synthetic_size": SYNTHETIC_SIZE if self.synthetic_size is None else self.synthetic_size,
            "val_fraction": self.val_fraction,
            "test_fraction": TEST_FRACTION if self.test_fraction is None else self.test_fraction,
        }

    def quantizer_loss_weight(self) -> float:
        """The weight of the quantizer's loss in the training loss (none without a quantizer)."""
        return 0.0

    def ignored_options(self) -> list[tuple[str, str]]:
        """``(option, why it would be ignored)`` for each option given that the others make meaningless."""
        ignored = []
        if self.dataset == "synthetic" and self.data_path is not None:
            ignored.append(
                ("data_path", "dataset is 'synthetic', which reads no files; set --dataset folder or oxford_pet")
            )
        if self.dataset != "synthetic" and self.synthetic_size is not None:
            ignored.append(("synthetic_size", f"dataset is {self.dataset!r}, which reads files"))
        if self.dataset == "oxford_pet" and self.test_fraction is not None:
            ignored.append(("test_fraction", "dataset 'oxford_pet' takes its test split from annotations/test.txt"))
        if "mlflow" not in self.loggers:
            for option in ("project_name", "task_name"):
                if getattr(self, option):
                    ignored.append((option, "only the mlflow logger uses it; add --logger mlflow"))
        return ignored


@dataclass
class SqueezeConfig(BaselineConfig):
    """Options of ``esq run squeeze``: the baseline's, plus the quantizer."""

    quantizer_type: str = field(
        default="vq", metadata={"option": "quantizer", "help": "esq list quantizers; none: the baseline"}
    )
    codebook_size: int | None = field(default=None, metadata={"help": "None: the quantizer's default"})
    bottleneck_dim: int | None = field(default=None, metadata={"help": f"None: {BOTTLENECK_DIM}"})
    num_quantizers: int | None = field(default=None, metadata={"help": "levels of rvq / residual_fsq"})
    quantizer_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "any other quantizer option"})
    vq_loss_weight: float | None = field(default=None, metadata={"help": f"None: {VQ_LOSS_WEIGHT}"})
    encoder_adapter: bool = False
    decoder_adapter: bool = False

    def options(self) -> dict[str, Any]:
        """The quantizer's options (``input_dim`` comes from the backbone)."""
        chosen = {
            "codebook_size": self.codebook_size,
            "bottleneck_dim": BOTTLENECK_DIM if self.bottleneck_dim is None else self.bottleneck_dim,
            "num_quantizers": self.num_quantizers,
        }
        return {**{key: value for key, value in chosen.items() if value is not None}, **self.quantizer_options}

    def quantizer_loss_weight(self) -> float:
        return VQ_LOSS_WEIGHT if self.vq_loss_weight is None else self.vq_loss_weight

    def ignored_options(self) -> list[tuple[str, str]]:
        ignored = super().ignored_options()
        if self.quantizer_type == NO_QUANTIZER:
            for option in ("codebook_size", "bottleneck_dim", "num_quantizers", "quantizer_options", "vq_loss_weight"):
                if getattr(self, option) not in (None, {}):
                    ignored.append((option, "quantizer is 'none' (the baseline); choose a quantizer or drop it"))
        return ignored


def check_baseline(config: BaselineConfig, plugins: Any) -> None:
    """Before the run directory exists: no option is given that the others make meaningless, the
    backbone segments and takes its options, the loss takes its options, the loggers are
    installed, Lightning accepts its options here, and a checkpoint to resume from is a verified
    esq checkpoint of this model with epochs left."""
    for option, why in config.ignored_options():
        raise ConfigError(f"{option}: given, but {why}; or drop {option}")
    check_segmentation_backbone(plugins.registry("backbones"), config.model, config.backbone_options, "model")
    refuse_clearml(config.use_clearml)
    check_loggers(config.loggers)
    check_loss(config.loss_type, config.loss_options)
    if config.resume is not None and not Path(config.resume).is_file():
        raise ConfigError(f"resume: no checkpoint at {config.resume}; give the last.ckpt of an earlier run")
    from esq.builtin.training.trainer import check_resume, check_trainer_options

    check_trainer_options(config)
    if config.resume is not None:
        check_resume(config)


def check_squeeze(config: SqueezeConfig, plugins: Any) -> None:
    """``check_baseline``, and the quantizer takes its options."""
    if config.quantizer_type != NO_QUANTIZER:
        check_quantizer(plugins.registry("quantizers"), config.quantizer_type, config.options(), "quantizer")
    if config.vq_loss_weight is not None:
        check_number("squeeze", "vq_loss_weight", config.vq_loss_weight, minimum=0)
    check_baseline(config, plugins)


def run_baseline(config: BaselineConfig, context: RunContext) -> Results:
    from esq.builtin.training.trainer import train

    return train(config, context, NO_QUANTIZER, {})


def run_squeeze(config: SqueezeConfig, context: RunContext) -> Results:
    from esq.builtin.training.trainer import train

    if config.quantizer_type == NO_QUANTIZER:
        return train(config, context, NO_QUANTIZER, {})
    return train(config, context, config.quantizer_type, config.options())
