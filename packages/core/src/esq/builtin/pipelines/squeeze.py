"""``esq run squeeze`` and ``esq run baseline``: train a segmentation head, with or without a
quantizer between the frozen backbone and the head, with Lightning; report IoU, bits per vector
and compression ratio on the test split.

The options keep the previous tools' names (``squeeze.py``, ``train_baseline.py``): ``model``,
``quantizer_type``, ``codebook_size``, ``bottleneck_dim``, ``num_quantizers``, ``epochs``,
``batch_size``, ``lr``, ``vq_loss_weight``, ``loss_type``, ``dataset``, ``data_path``,
``experiment_name``, ``subset_size``. Lightning's own (``accelerator``, ``devices``,
``strategy``, ``num_nodes``, ``precision``) pass through. Nothing here imports torch until a run
starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from esq import ConfigError, PipelineConfig, Results, RunContext
from esq.builtin.compat import backbone_name, refuse_clearml, run_name
from esq.builtin.pipelines.components import check_loggers, check_quantizer, check_segmentation_backbone
from esq.builtin.training import NO_QUANTIZER


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
    data_path: str = field(default="./data", metadata={"help": "folder (images/, masks/) or Oxford-IIIT Pet root"})
    image_size: int = 64
    num_classes: int | None = field(default=None, metadata={"help": "required for a folder dataset"})
    synthetic_size: int = field(default=96, metadata={"help": "images in the synthetic set"})
    subset_size: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
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
    project_name: str = field(default="esq", metadata={"help": "MLflow experiment (with loggers = [..., 'mlflow'])"})
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
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")

    def data_settings(self) -> dict[str, Any]:
        """What ``open_segmentation`` takes, as stored in checkpoints."""
        return {
            "dataset": self.dataset,
            "data_path": None if self.dataset == "synthetic" else self.data_path,
            "image_size": self.image_size,
            "seed": self.seed,
            "num_classes": self.num_classes,
            "synthetic_size": self.synthetic_size,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
        }


@dataclass
class SqueezeConfig(BaselineConfig):
    """Options of ``esq run squeeze``: the baseline's, plus the quantizer."""

    quantizer_type: str = field(default="vq", metadata={"option": "quantizer", "help": "esq list quantizers"})
    codebook_size: int | None = field(default=None, metadata={"help": "None: the quantizer's default"})
    bottleneck_dim: int = 64
    num_quantizers: int | None = field(default=None, metadata={"help": "levels of rvq / residual_fsq"})
    quantizer_options: dict[str, Any] = field(default_factory=dict, metadata={"help": "any other quantizer option"})
    vq_loss_weight: float = 0.1
    encoder_adapter: bool = False
    decoder_adapter: bool = False

    def options(self) -> dict[str, Any]:
        """The quantizer's options (``input_dim`` comes from the backbone)."""
        chosen = {
            "codebook_size": self.codebook_size,
            "bottleneck_dim": self.bottleneck_dim,
            "num_quantizers": self.num_quantizers,
        }
        return {**{key: value for key, value in chosen.items() if value is not None}, **self.quantizer_options}


def check_baseline(config: BaselineConfig, plugins: Any) -> None:
    """Before the run directory exists: the backbone segments and takes its options, the loggers
    are installed, and a checkpoint to resume from is there."""
    check_segmentation_backbone(plugins.registry("backbones"), config.model, config.backbone_options, "model")
    refuse_clearml(config.use_clearml)
    check_loggers(config.loggers)
    if config.resume is not None and not Path(config.resume).is_file():
        raise ConfigError(f"resume: no checkpoint at {config.resume}; give the last.ckpt of an earlier run")


def check_squeeze(config: SqueezeConfig, plugins: Any) -> None:
    """``check_baseline``, and the quantizer takes its options."""
    check_baseline(config, plugins)
    if config.quantizer_type != NO_QUANTIZER:
        check_quantizer(plugins.registry("quantizers"), config.quantizer_type, config.options(), "quantizer")


def run_baseline(config: BaselineConfig, context: RunContext) -> Results:
    from esq.builtin.training.trainer import train

    return train(config, context, NO_QUANTIZER, {})


def run_squeeze(config: SqueezeConfig, context: RunContext) -> Results:
    from esq.builtin.training.trainer import train

    if config.quantizer_type == NO_QUANTIZER:
        return train(config, context, NO_QUANTIZER, {})
    return train(config, context, config.quantizer_type, config.options())
