"""One training run of ``esq run squeeze`` / ``baseline``: data, module, Lightning ``Trainer``,
checkpoints and loggers in the run directory, then the test split scored with the best weights.

The run directory gets ``checkpoints/last.ckpt`` and ``checkpoints/best.ckpt`` (highest
``val/mean_iou``), ``logs/csv/`` (``metrics.csv``) and ``logs/tensorboard/`` (and MLflow's
``logs/mlruns`` when asked for and installed).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from esq import ConfigError, Results, RunContext, share_run_directory
from esq.builtin.data.segmentation import check_masks, open_segmentation, segmentation_loader
from esq.builtin.training.checkpoint_state import check_matches, read_checkpoint
from esq.builtin.training.module import SegmentationModule

SCORES = ("mean_iou", "pixel_accuracy", "sample_iou_mean", "sample_iou_median", "codebook_usage", "perplexity")
# Lightning's chatter (GPU available, model summary...) goes to run.log only
QUIET = ("lightning.pytorch", "lightning.fabric", "lightning")
# Lightning warnings that say what esq does on purpose: the frozen backbone stays in eval mode, and
# a resumed run checkpoints into its own new run directory
EXPECTED_WARNINGS = (r"Found \d+ module\(s\) in eval mode", r"The dirpath has changed from", r".*LeafSpec")


def _loggers(config: Any, folder: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Any] = []
    for name in config.loggers:
        if name == "csv":
            loggers.append(CSVLogger(folder, name="csv", version=""))
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(folder, name="tensorboard", version="", default_hp_metric=False))
        else:
            try:
                from lightning.pytorch.loggers import MLFlowLogger

                loggers.append(
                    MLFlowLogger(
                        experiment_name=config.project_name,
                        run_name=config.task_name or folder.parent.name,
                        tracking_uri=f"file:{folder / 'mlruns'}",
                    )
                )
            except ModuleNotFoundError:
                raise ConfigError("loggers: mlflow is not installed; pip install mlflow, or drop it") from None
    return loggers


def _data(config: Any) -> dict[str, Any]:
    """The three splits; a folder's masks are all checked first (a bad label is one error naming
    its file, not a crash inside a data-loading worker)."""
    settings = config.data_settings()
    sets = {
        split: open_segmentation(**settings, split=split, subset_size=config.subset_size)
        for split in ("train", "val", "test")
    }
    if config.dataset == "folder":
        for dataset in sets.values():
            check_masks(dataset)
    return sets


def _quiet_lightning() -> None:
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def train(config: Any, context: RunContext, quantizer: str, quantizer_options: dict[str, Any]) -> Results:
    """Train, checkpoint, test; the results' one row is the test split's scores."""
    _quiet_lightning()
    sets = _data(config)
    train_set = sets["train"]
    hparams = {
        "backbone": config.model,
        "backbone_options": dict(config.backbone_options),
        "num_classes": train_set.num_classes,
        "quantizer": quantizer,
        "quantizer_options": dict(quantizer_options),
        "encoder_adapter": getattr(config, "encoder_adapter", False),
        "decoder_adapter": getattr(config, "decoder_adapter", False),
        "loss": config.loss_type,
        "loss_options": dict(config.loss_options),
        "lr": config.lr,
        "vq_loss_weight": getattr(config, "vq_loss_weight", 0.0),
        "ignore_index": train_set.ignore_index,
        "class_names": list(train_set.class_names),
        "data": {key: value for key, value in train_set.settings().items() if key != "split"},
    }
    if config.resume is not None:
        previous = read_checkpoint(config.resume).get("hyper_parameters", {})
        check_matches(config.resume, previous, {k: hparams[k] for k in ("backbone", "quantizer", "num_classes")})
    module = SegmentationModule(**hparams, plugins=context.plugins)
    context.log.info(
        "%s + %s: %d train, %d val, %d test images; %.1f bits per vector, compression %.1f×",
        config.model,
        quantizer,
        len(train_set),
        len(sets["val"]),
        len(sets["test"]),
        module.bits_per_vector,
        module.compression_ratio,
    )
    checkpoints = ModelCheckpoint(
        dirpath=context.path("checkpoints"),
        filename="best",
        monitor="val/mean_iou",
        mode="max",
        save_last=True,
        enable_version_counter=False,
    )
    share_run_directory(context.directory)
    trainer = L.Trainer(
        max_epochs=config.epochs,
        accelerator=config.accelerator,
        devices=config.devices,
        strategy=config.strategy,
        num_nodes=config.num_nodes,
        precision=config.precision,
        logger=_loggers(config, context.path("logs")),
        callbacks=[checkpoints],
        default_root_dir=context.directory,
        enable_progress_bar=context.show_progress and os.isatty(2),
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic=False,
    )
    loader = {
        split: segmentation_loader(
            dataset,
            batch_size=config.batch_size,
            shuffle=split == "train",
            num_workers=config.num_workers,
            seed=config.seed,
        )
        for split, dataset in sets.items()
    }
    with warnings.catch_warnings():
        for message in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(module, loader["train"], loader["val"], ckpt_path=config.resume)
        best = checkpoints.best_model_path or checkpoints.last_model_path
        (tested,) = trainer.test(module, loader["test"], ckpt_path=best, verbose=False)
    row = {
        "model": config.model,
        "quantizer": quantizer,
        **{name: tested[f"test/{name}"] for name in SCORES if f"test/{name}" in tested},
        "bits_per_vector": module.bits_per_vector,
        "compression_ratio": module.compression_ratio,
    }
    summary = {
        "best_checkpoint": str(Path(best).resolve().relative_to(context.directory.resolve())) if best else None,
        "last_checkpoint": "checkpoints/last.ckpt",
        "best_val_mean_iou": float(checkpoints.best_model_score) if checkpoints.best_model_score is not None else None,
        "epochs": trainer.current_epoch,
        "train_images": len(train_set),
    }
    return Results(rows=[row], summary=summary)
