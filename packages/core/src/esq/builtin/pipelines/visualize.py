"""``esq run visualize``: a quantized model against its baseline, sample by sample.

Both checkpoints are scored on one split of the data the quantized model was trained on (or
``dataset``/``data_path`` given here). Samples are ranked by the quantized model's per-sample
IoU; ``best_results_{split}.png`` and ``worst_results_{split}.png`` show the ``n_best`` and
``n_worst`` of them (image, ground truth, baseline prediction, quantized prediction with IoU).
The table gives each model's mean and median per-sample IoU and the gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from esq import PipelineConfig, Results, RunContext


@dataclass
class VisualizeConfig(PipelineConfig):
    """Options of ``esq run visualize`` (the previous ``visualize.py``'s names)."""

    vq_checkpoint: str = field(default="", metadata={"help": "the quantized model's .ckpt or .pth (required)"})
    baseline_checkpoint: str = field(default="", metadata={"help": "the baseline's .ckpt or .pth (required)"})
    model: str | None = field(default=None, metadata={"help": "refuse checkpoints of another backbone"})
    dataset_split: Literal["train", "val", "test"] = "test"
    n_best: int = 5
    n_worst: int = 5
    dataset: str | None = field(default=None, metadata={"help": "None: the data the quantized model trained on"})
    data_path: str | None = None
    batch_size: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        from esq.builtin.compat import backbone_name

        for option in ("vq_checkpoint", "baseline_checkpoint"):
            if not getattr(self, option):
                raise ValueError(f"{option} is required: the path of a checkpoint (--set {option}=...)")
        for option, least in (("n_best", 0), ("n_worst", 0), ("batch_size", 1)):
            if getattr(self, option) < least:
                raise ValueError(f"{option} must be at least {least}, got {getattr(self, option)}")
        if self.model is not None:
            self.model = backbone_name(self.model)


def check(config: VisualizeConfig, plugins: Any) -> None:
    """Before the run directory exists: both checkpoints are there, pass their checksums, load
    with ``weights_only=True`` and (for esq's own) hold sound hyper-parameters of ``model``."""
    from esq.builtin.training.checkpoint_state import check_matches, checked_hparams, read_checkpoint

    for option in ("vq_checkpoint", "baseline_checkpoint"):
        path = getattr(config, option)
        checkpoint = read_checkpoint(path)
        if "hyper_parameters" in checkpoint:
            hparams = checked_hparams(path, checkpoint["hyper_parameters"])
            check_matches(path, hparams, {"backbone": config.model})


def _data(config: VisualizeConfig, hparams: dict[str, Any]) -> Any:
    from esq.builtin.data.segmentation import open_segmentation

    settings = {key: value for key, value in hparams["data"].items() if key != "split"}
    if config.dataset is not None:
        settings["dataset"] = config.dataset
    if config.data_path is not None:
        settings["data_path"] = config.data_path
    return open_segmentation(**settings, split=config.dataset_split)


def _predict(models: dict[str, Any], dataset: Any, batch_size: int, context: RunContext) -> dict[str, Any]:
    """Per-sample IoU and predictions of each model, with the images and masks."""
    import torch

    from esq.builtin.data.segmentation import segmentation_loader
    from esq.builtin.training.segmentation_metrics import per_sample_iou

    found: dict[str, list[Any]] = {"images": [], "truth": []}
    for name in models:
        found[name], found[f"{name}_iou"] = [], []
    loader = segmentation_loader(dataset, batch_size, shuffle=False)
    with torch.no_grad():
        for images, masks in context.progress(loader, "predicting", total=len(loader)):
            found["images"].append(images)
            found["truth"].append(masks)
            for name, model in models.items():
                predictions = model.predict(images)
                found[name].append(predictions)
                found[f"{name}_iou"].append(
                    per_sample_iou(predictions, masks, dataset.num_classes, dataset.ignore_index)
                )
    return {key: torch.cat(values) for key, values in found.items()}


def choose_samples(ranked: list[int], n_best: int, n_worst: int) -> tuple[list[int], list[int], str | None]:
    """The best and worst of ``ranked`` (best first), no sample in both, and why fewer were taken:
    when ``n_best + n_worst`` exceed the samples, they are shared out (the worst get at most half
    when best are wanted too).

    >>> choose_samples([4, 2, 0, 1, 3], 5, 5)[:2]
    ([4, 2, 0], [3, 1])
    >>> choose_samples([4, 2, 0, 1, 3], 2, 1)
    ([4, 2], [3], None)
    """
    count = len(ranked)
    if n_best + n_worst <= count:
        return ranked[:n_best], ranked[::-1][:n_worst], None
    worst = min(n_worst, count // 2 if n_best else count)
    best = min(n_best, count - worst)
    worst = min(n_worst, count - best)
    samples = "1 sample" if count == 1 else f"{count} samples"
    note = (
        f"n_best {n_best} + n_worst {n_worst} exceed the {samples} with a score; showing the best {best} "
        f"and the worst {worst}, each sample once (lower n_best / n_worst, or use a larger dataset_split)"
    )
    return ranked[:best], ranked[::-1][:worst], note


def sample_name(dataset: Any, position: int) -> str:
    """How a figure names item ``position`` of ``dataset``: its image's file name where the data is
    files (``folder``, ``oxford_pet``), with the position in the split; else the position."""
    from pathlib import Path

    from esq.builtin.pipelines.similarity.features import printable

    pairs = getattr(dataset, "pairs", None)
    if pairs is None:
        return str(position)
    return f"{position} {printable(Path(pairs[dataset.indices[position]][0]).name)}"


def _sample(found: dict[str, Any], index: int, name: str) -> dict[str, Any]:
    return {
        "index": name,
        "image": found["images"][index].numpy(),
        "truth": found["truth"][index].numpy(),
        "baseline": found["baseline"][index].numpy(),
        "quantized": found["quantized"][index].numpy(),
        "baseline_iou": float(found["baseline_iou"][index]),
        "quantized_iou": float(found["quantized_iou"][index]),
    }


def run(config: VisualizeConfig, context: RunContext) -> Results:
    import numpy as np
    import torch

    from esq import CheckpointError
    from esq.builtin.checkpoints import load_checkpoint
    from esq.builtin.training.figures import plot_samples

    expected = {"backbone": config.model} if config.model else {}
    quantized = load_checkpoint(config.vq_checkpoint, context.plugins, **expected)
    baseline = load_checkpoint(
        config.baseline_checkpoint, context.plugins, **expected, num_classes=quantized.hparams["num_classes"]
    )
    if baseline.hparams["backbone"] != quantized.hparams["backbone"]:
        raise CheckpointError(
            f"{config.baseline_checkpoint}: a baseline of backbone {baseline.hparams['backbone']!r}, but the "
            f"quantized model uses {quantized.hparams['backbone']!r}; compare models on the same backbone"
        )
    dataset = _data(config, quantized.hparams)
    context.log.info("%s: %d %s images", dataset.name, len(dataset), config.dataset_split)
    found = _predict({"baseline": baseline, "quantized": quantized}, dataset, config.batch_size, context)
    scores = found["quantized_iou"]
    ranked = [int(i) for i in torch.argsort(torch.nan_to_num(scores, nan=-1.0), descending=True, stable=True)]
    ranked = [index for index in ranked if not torch.isnan(scores[index])]
    split = config.dataset_split
    title = f"{quantized.hparams['backbone']} + {quantized.hparams['quantizer']} against the baseline, {split} split"
    best, worst, note = choose_samples(ranked, config.n_best, config.n_worst)
    if note:
        context.log.warning("%s", note)
    shown = {}
    for kind, chosen in (("best", best), ("worst", worst)):
        shown[kind] = [sample_name(dataset, index) for index in chosen]
        plot_samples(
            context.path(f"{kind}_results_{split}.png"),
            f"{kind} {len(chosen)} by the quantized model's IoU — {title}",
            [_sample(found, index, name) for index, name in zip(chosen, shown[kind], strict=True)],
            list(quantized.hparams["class_names"]),
            dataset.ignore_index,
        )
    rows = []
    for name, model in (("baseline", baseline), ("quantized", quantized)):
        values = found[f"{name}_iou"]
        rows.append(
            {
                "model": name,
                "quantizer": model.hparams["quantizer"],
                "mean_iou": float(torch.nanmean(values)),
                "median_iou": float(np.nanmedian(values.numpy())),
                "bits_per_vector": model.bits_per_vector,
            }
        )
    rows.append(
        {
            "model": "gap (quantized − baseline)",
            "mean_iou": rows[1]["mean_iou"] - rows[0]["mean_iou"],
            "median_iou": rows[1]["median_iou"] - rows[0]["median_iou"],
        }
    )
    summary = {
        "split": split,
        "samples": len(dataset),
        "baseline_checkpoint": config.baseline_checkpoint,
        "vq_checkpoint": config.vq_checkpoint,
        "figures": [f"best_results_{split}.png", f"worst_results_{split}.png"],
        "shown": shown,
    }
    return Results(rows=rows, summary=summary)
