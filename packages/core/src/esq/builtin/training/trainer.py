"""One training run of ``esq run squeeze`` / ``baseline``: data, module, Lightning ``Trainer``,
checkpoints and loggers in the run directory, then the test split scored with the best weights.

The run directory gets ``checkpoints/best.ckpt`` (highest ``val/mean_iou``) and
``checkpoints/last.ckpt``, written after every epoch, and also when training stops on an error or
a signal (SIGTERM, SIGINT), so a killed run resumes with ``--resume .../last.ckpt`` where it
stopped; ``logs/csv/`` (``metrics.csv``) and ``logs/tensorboard/`` (and MLflow's ``logs/mlruns``
when asked for and installed).

Lightning's own options (``accelerator``, ``devices``, ``strategy``, ``num_nodes``,
``precision``) are checked by building a ``Trainer`` before the run directory exists
(``check_trainer_options``); what Lightning refuses is one ``ConfigError`` naming the option.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from esq import ConfigError, Results, RunContext, share_run_directory
from esq.builtin.data.segmentation import check_masks, open_segmentation, segmentation_loader
from esq.builtin.training import NO_QUANTIZER, report
from esq.builtin.training.checkpoint_state import (
    check_matches,
    checked_hparams,
    read_checkpoint,
    training_progress,
)
from esq.builtin.training.module import SegmentationModule
from esq.builtin.training.progress_callback import TrainingProgress

# Lightning's chatter (GPU available, model summary...) goes to run.log only
QUIET = ("lightning.pytorch", "lightning.fabric", "lightning")
# Lightning warnings that say what esq does on purpose: the frozen backbone stays in eval mode, and
# a resumed run checkpoints into its own new run directory
EXPECTED_WARNINGS = (
    r"Found \d+ module\(s\) in eval mode",
    r"The dirpath has changed from",
    r".*LeafSpec",
    r"You're resuming from a checkpoint that ended before the epoch ended",
)
# Lightning's Trainer options, in the order their names are looked for in its error messages
# ("`devices` selected with `CPUAccelerator`" is about devices, not the accelerator)
TRAINER_OPTIONS = ("devices", "precision", "strategy", "num_nodes", "accelerator")
log = logging.getLogger("esq.training")


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` after every epoch, whatever the validation score, and when ``fit`` stops on an
    exception (``esq.RunInterrupted`` from a signal included) after steps it has not saved yet.

    Lightning's ``save_last=True`` refreshes ``last.ckpt`` only when a new best is saved, so a run
    could end with a ``last.ckpt`` of its first epoch."""

    def __init__(self, dirpath: Path) -> None:
        super().__init__(
            dirpath=dirpath, filename="last", monitor=None, save_top_k=1, every_n_epochs=1, enable_version_counter=False
        )

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if trainer.state.fn != "fit" or trainer.sanity_checking or trainer.global_step == self._last_global_step_saved:
            return
        path = Path(self.dirpath) / "last.ckpt"
        try:
            trainer.save_checkpoint(path)
        except Exception as error:  # the error that stopped training is the one to report
            log.warning("could not save %s after %s: %s", path, type(exception).__name__, error)
            return
        self._last_global_step_saved = trainer.global_step
        log.info("saved %s at epoch %d, step %d", path, trainer.current_epoch, trainer.global_step)


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
                        experiment_name=config.project_name or "esq",
                        run_name=config.task_name or folder.parent.name,
                        tracking_uri=f"file:{folder / 'mlruns'}",
                    )
                )
            except ModuleNotFoundError:
                raise ConfigError("loggers: mlflow is not installed; pip install mlflow, or drop it") from None
    return loggers


def _trainer_options(config: Any) -> dict[str, Any]:
    return {option: getattr(config, option) for option in TRAINER_OPTIONS}


def build_trainer(config: Any, **settings: Any) -> L.Trainer:
    """A ``Trainer`` with ``config``'s Lightning options; what Lightning refuses in them is one
    ``ConfigError`` naming the option and its value."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    options = _trainer_options(config)
    try:
        return L.Trainer(**options, **settings)
    except (MisconfigurationException, ValueError, TypeError, RuntimeError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        named = [option for option in TRAINER_OPTIONS if option in text.lower()] or list(TRAINER_OPTIONS)
        given = ", ".join(f"{option} = {options[option]!r}" for option in named[:1] or TRAINER_OPTIONS)
        raise ConfigError(f"{given}: Lightning refuses it: {text}") from None


def check_trainer_options(config: Any) -> None:
    """Before the run directory exists: Lightning accepts ``config``'s accelerator, devices,
    strategy, num_nodes and precision on this machine (a ``ConfigError`` naming the option)."""
    _quiet_lightning()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_trainer(
            config, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
        )


def check_resume(config: Any) -> None:
    """Before the run directory exists: ``config.resume`` is a verified esq checkpoint of this
    backbone and quantizer with epochs left to train."""
    path = config.resume
    checkpoint = read_checkpoint(path)
    if "hyper_parameters" not in checkpoint or "loops" not in checkpoint:
        raise ConfigError(
            f"resume: {path} is not a last.ckpt of esq run squeeze/baseline (it has no training state); "
            "give the last.ckpt of an earlier run"
        )
    hparams = checked_hparams(path, checkpoint["hyper_parameters"])
    quantizer = getattr(config, "quantizer_type", NO_QUANTIZER)
    check_matches(path, hparams, {"backbone": config.model, "quantizer": quantizer})
    done, step, _ = training_progress(checkpoint)
    if done >= config.epochs:
        raise ConfigError(
            f"resume: {path} has finished {done} of epochs = {config.epochs} (step {step}): nothing is left to "
            f"train; raise epochs above {done} to train on, or use the checkpoint as it is"
        )


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


def _within(path: Path, directory: Path) -> str:
    """``path`` relative to the run ``directory``, or absolute where it lies outside it."""
    resolved, root = path.resolve(), directory.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


def _quiet_lightning() -> None:
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def train(config: Any, context: RunContext, quantizer: str, quantizer_options: dict[str, Any]) -> Results:
    """Train, checkpoint, test; the results are the test split's tidy rows (``report.result_rows``)
    and one wide row to print, the confusion matrix is ``confusion_matrix.csv``."""
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
        "vq_loss_weight": config.quantizer_loss_weight(),
        "ignore_index": train_set.ignore_index,
        "class_names": list(train_set.class_names),
        "data": {key: value for key, value in train_set.settings().items() if key != "split"},
    }
    if config.resume is not None:
        previous = read_checkpoint(config.resume)
        check_matches(
            config.resume,
            checked_hparams(config.resume, previous.get("hyper_parameters", {})),
            {k: hparams[k] for k in ("backbone", "quantizer", "num_classes")},
        )
        done, step, mid_epoch = training_progress(previous)
        context.log.info(
            "resumed from %s: %d of %d epochs done%s (step %d); training on from epoch %d",
            config.resume,
            done,
            config.epochs,
            ", stopped during the next" if mid_epoch else "",
            step,
            done + 1,
        )
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
        enable_version_counter=False,
    )
    share_run_directory(context.directory)
    trainer = build_trainer(
        config,
        max_epochs=config.epochs,
        logger=_loggers(config, context.path("logs")),
        callbacks=[
            checkpoints,
            LastCheckpoint(context.path("checkpoints")),
            *([TrainingProgress(f"{config.model} + {quantizer}")] if context.show_progress else []),
        ],
        default_root_dir=context.directory,
        enable_progress_bar=False,
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
        best = checkpoints.best_model_path or str(context.path("checkpoints") / "last.ckpt")
        trainer.test(module, loader["test"], ckpt_path=best, verbose=False)
    settings = report.setting_columns(config, module, quantizer, trainer.current_epoch)
    class_names = list(module.hparams.class_names)
    if trainer.is_global_zero:  # under DDP every process has the same report; one warns and writes the file
        report.warn_low_usage(context, settings, module.test_report.get("usage"))
        report.write_confusion_matrix(context, module.test_report, class_names)
    summary = {
        "best_checkpoint": _within(Path(best), context.directory) if best else None,
        "last_checkpoint": "checkpoints/last.ckpt",
        "best_val_mean_iou": float(checkpoints.best_model_score) if checkpoints.best_model_score is not None else None,
        "epochs": trainer.current_epoch,
        "train_images": len(train_set),
        "class_names": class_names,
        "confusion_matrix": report.CONFUSION_MATRIX,
    }
    rows = report.result_rows(settings, module.test_report, class_names)
    return Results(rows=rows, summary=summary, table=[report.table_row(settings, module.test_report)])
