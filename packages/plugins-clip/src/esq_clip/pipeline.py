"""``esq run retrieval``: Chinese-CLIP retrieval evaluation, the official scripts' job on any
machine: extract features, top-k search, Recall@1/5/10 text→image and image→text, for one or
several checkpoints side by side, and optionally on embeddings squeezed by a quantizer.

Each model's files go to ``<run>/<model>/`` under the official names (see :mod:`esq_clip.recall`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from esq import (
    CheckpointError,
    ConfigError,
    DataError,
    PipelineConfig,
    Results,
    RunContext,
    check_device,
    check_int,
    check_number,
    failed_row,
    run_file_name,
)

STEPS = ("extract", "knn", "recall")
TOP_K = 10  # the official scorer requires exactly 10 predictions per query


@dataclass
class RetrievalConfig(PipelineConfig):
    """Options of ``esq run retrieval``."""

    datapath: str = field(default="", metadata={"help": "folder holding datasets/<dataset>/ (required)"})
    dataset: str = field(default="MUGE", metadata={"option": "dataset-name"})
    split: str = "valid"
    data_source: Literal["auto", "tsv", "lmdb"] = "auto"
    vision_model: str = "ViT-B-16"
    text_model: str = "RoBERTa-wwm-ext-base-chinese"
    model_paths: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={"option": "model-path", "help": "checkpoints side by side; 'none': random weights"},
    )
    steps: list[Literal["extract", "knn", "recall"]] = field(
        default_factory=lambda: list(STEPS), metadata={"option": "step"}
    )
    skip_extraction: bool = field(default=False, metadata={"help": "steps without extract (needs features_dir)"})
    features_dir: str | None = field(
        default=None, metadata={"help": "without the extract step: a previous run's folder with <model>/ features"}
    )
    text_to_image: bool = field(default=True, metadata={"negative": "skip-text-to-image"})
    image_to_text: bool = field(default=True, metadata={"negative": "skip-image-to-text"})
    retriever: str = "exact"
    retriever_options: dict[str, Any] = field(default_factory=dict)
    quantizer: str | None = field(default=None, metadata={"help": "also score embeddings squeezed by it"})
    quantizer_options: dict[str, Any] = field(default_factory=dict)
    quantizer_steps: int = 200
    learning_rate: float = 1e-3
    batch_size: int = 64
    device: str = field(default="cpu", metadata={"help": "where features are extracted: cpu, cuda, cuda:1..."})

    @property
    def run_steps(self) -> list[str]:
        """The steps to run: ``steps``, less ``extract`` with ``skip_extraction``."""
        return [step for step in self.steps if not (self.skip_extraction and step == "extract")]


def check(config: RetrievalConfig, plugins: Any) -> None:
    """Before the run directory exists: the options hold together, the split's files, the
    checkpoints and the features named are there, and the backbone, the retriever and the
    quantizer are installed and take their options."""
    from esq_clip.splits import locate_split

    owner = "retrieval"
    if not config.datapath:
        raise ConfigError("datapath is required: the folder holding datasets/<dataset>/ (--set datapath=...)")
    steps = config.run_steps
    if not steps:
        raise ConfigError(f"steps is empty; choose from {', '.join(STEPS)}")
    if "extract" not in steps and config.features_dir is None:
        raise ConfigError("without the extract step, features_dir must name a previous run's folder")
    if not (config.text_to_image or config.image_to_text):
        raise ConfigError("text_to_image and image_to_text are both off: nothing to search")
    if not config.model_paths:
        raise ConfigError("model_paths is empty; give a checkpoint, or 'none' for random weights")
    model_names(config.model_paths)
    check_int(owner, "quantizer_steps", config.quantizer_steps, minimum=0)
    check_int(owner, "batch_size", config.batch_size, minimum=1)
    check_number(owner, "learning_rate", config.learning_rate, minimum=0, exclusive=("minimum",))
    locate_split(config.datapath, config.dataset, config.split, source=config.data_source)
    if "extract" in steps:
        from esq_clip.models import check_checkpoint

        check_device(owner, "device", config.device)
        plugins.registry("backbones").check(
            "chinese_clip", vision_model=config.vision_model, text_model=config.text_model, batch_size=config.batch_size
        )
        for path in config.model_paths:
            if path != "none" and not Path(path).is_file():
                raise ConfigError(
                    f"model_paths: no checkpoint at {path}; give a Chinese-CLIP checkpoint, or 'none' (random weights)"
                )
            if path != "none":
                check_checkpoint(Path(path), config.vision_model, config.text_model)
    elif {"knn", "recall"} & set(steps):
        for name in model_names(config.model_paths).values():
            for features in features_files(config, name):
                if not features.is_file():
                    raise ConfigError(f"features_dir: no {features} (model {name!r}); extract it first")
    if "knn" in steps:
        plugins.registry("retrievers").check(config.retriever, **config.retriever_options)
    if config.quantizer is not None and {"knn", "recall"} & set(steps):
        dimension = feature_dim(config, config.model_paths[0])
        plugins.registry("quantizers").check(config.quantizer, input_dim=dimension, **config.quantizer_options)


def feature_dim(config: RetrievalConfig, model_path: str) -> int:
    """The dimension of the embeddings the quantizer will see: the model's, or that of the
    features given."""
    import json

    if "extract" in config.run_steps:
        from esq_clip.models import model_info

        return int(model_info(config.vision_model, config.text_model)["embed_dim"])
    path = features_files(config, model_names(config.model_paths)[model_path])[0]
    with open(path, encoding="utf-8") as handle:
        try:
            return len(json.loads(handle.readline())["feature"])
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path}, line 1: not a features line ({error}); extract again") from None


def features_files(config: RetrievalConfig, name: str, folder: Path | None = None) -> tuple[Path, Path]:
    """The image and the text features files of the model called ``name`` (``model_names``), in
    ``folder`` (default: its folder in ``features_dir``)."""
    folder = folder if folder is not None else Path(config.features_dir) / name
    return folder / f"{config.split}_imgs.img_feat.jsonl", folder / f"{config.split}_texts.txt_feat.jsonl"


def _plain(text: str) -> str:
    """``text`` as a folder name: other characters than letters, digits, ``.``, ``_`` and ``-``
    become ``_``, and one the run directory cannot hold gets a ``model-`` prefix."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text)
    try:
        return run_file_name("model_paths", name)
    except ConfigError:
        return f"model-{name}"


def _distinct(paths: list[Path], with_suffix: bool) -> dict[Path, str]:
    """Names of ``paths`` (which share a stem) from their folders below the common one."""
    common = Path(os.path.commonpath(paths)) if len(paths) > 1 else paths[0].parent
    common = common if common not in paths else common.parent
    return {
        path: _plain("-".join((path if with_suffix else path.with_suffix("")).relative_to(common).parts))
        for path in paths
    }


def model_names(paths: list[str]) -> dict[str, str]:
    """A unique, readable name (and folder) for each of ``paths``: the file's stem (``random``
    for ``none``), with its parent folders where stems repeat (``a-epoch_latest``,
    ``b-epoch_latest``), and its suffix where even those do. The same file twice is an error.

    >>> model_names(["runs/a/epoch_latest.pt", "runs/b/epoch_latest.pt", "none"])
    {'runs/a/epoch_latest.pt': 'a-epoch_latest', 'runs/b/epoch_latest.pt': 'b-epoch_latest', 'none': 'random'}
    """
    resolved = {path: Path(path).resolve() for path in paths if path != "none"}
    for path in set(paths):
        twice = [other for other in paths if other == path or resolved.get(other, other) == resolved.get(path, path)]
        if len(twice) > 1:
            raise ConfigError(f"model_paths: {path!r} is given {len(twice)} times; give each model once")
    names = {file: _plain(file.stem) for file in resolved.values()}
    for with_suffix in (False, True):
        by_name: dict[str, list[Path]] = {}
        for file, name in names.items():
            by_name.setdefault(name, []).append(file)
        for clashing in (files for name, files in by_name.items() if len(files) > 1 or name == "random"):
            names.update(_distinct(clashing, with_suffix))
    taken: dict[str, int] = {}
    result = {}
    for path in paths:
        name = "random" if path == "none" else names[resolved[path]]
        taken[name] = taken.get(name, 0) + 1
        result[path] = name if taken[name] == 1 else f"{name}-{taken[name]}"
    return result


def extract(config: RetrievalConfig, model_path: str, folder: Path, split: Any, context: RunContext) -> None:
    """Normalised image and text features of the split, in the official features files."""
    import torch

    from esq_clip.recall import write_features

    torch.manual_seed(config.seed)
    model = (
        context.registry("backbones")
        .create(
            "chinese_clip",
            vision_model=config.vision_model,
            text_model=config.text_model,
            weights=model_path,
            batch_size=config.batch_size,
        )
        .to(config.device)
    )
    parts = []
    for start in context.progress(range(0, len(split.image_ids), config.batch_size), "images"):
        ids = split.image_ids[start : start + config.batch_size]
        parts.append(model.encode_images(model.preprocess(split.images(ids))).cpu())
    images_file, texts_file = features_files(config, folder.name, folder)
    write_features(images_file, "image_id", split.image_ids, torch.cat(parts))
    texts = model.encode_texts([text for _, text, _ in split.texts]).cpu()
    text_ids = [text_id for text_id, _, _ in split.texts]
    write_features(texts_file, "text_id", text_ids, texts)
    context.log.info("%s: %d image and %d text features", folder.name, len(split.image_ids), len(text_ids))


def check_sizes(config: RetrievalConfig, split: Any) -> None:
    """Each direction searched needs ``TOP_K`` keys: images for text→image, texts for image→text."""
    for wanted, kind, count in (
        (config.text_to_image, "images", len(split.image_ids)),
        (config.image_to_text, "texts", len(split.texts)),
    ):
        direction = "text-to-image" if kind == "images" else "image-to-text"
        if wanted and count < TOP_K:
            raise DataError(
                f"{split.name}: {count} {kind}, but {direction} retrieval predicts the top {TOP_K}; "
                f"give the split at least {TOP_K} {kind}"
                + (", or skip that direction (--skip-image-to-text)" if kind == "texts" else "")
            )


def top_k(config: RetrievalConfig, context: RunContext, keys: Any, key_ids: list[int], queries: Any) -> list[list[int]]:
    retriever = context.registry("retrievers").create(config.retriever, **config.retriever_options).index(keys)
    _, positions = retriever.search(queries, TOP_K)
    return [[key_ids[position] for position in row] for row in positions.tolist()]


def squeeze(config: RetrievalConfig, context: RunContext, gallery: Any, *others: Any) -> tuple[list[Any], float]:
    """The gallery and the other embeddings through a quantizer fitted on the gallery,
    re-normalised; and its bits per vector."""
    import torch

    from esq_clip.fitting import fit_quantizer

    quantizer = context.registry("quantizers").create(
        config.quantizer, input_dim=gallery.shape[1], **config.quantizer_options
    )
    fit_quantizer(quantizer, gallery.unsqueeze(0), config.quantizer_steps, config.learning_rate)
    squeezed = []
    with torch.no_grad():
        for features in (gallery, *others):
            quantized = quantizer(features.unsqueeze(0)).quantized.squeeze(0).float()
            squeezed.append(quantized / quantized.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return squeezed, float(quantizer.bits_per_vector)


def search_and_score(
    config: RetrievalConfig, context: RunContext, folder: Path, split: Any, features: dict[str, Any], suffix: str
) -> list[dict[str, Any]]:
    """Predictions (official files) and recalls in each direction for one set of embeddings."""
    from esq_clip.recall import (
        image_to_text_gold,
        recalls,
        score_document,
        write_gold,
        write_predictions,
        write_scores,
    )

    image_ids, images = features["images"]
    text_ids, texts = features["texts"]
    rows = []
    directions = []
    if config.text_to_image:
        gold = {text_id: list(ids) for text_id, _, ids in split.texts}
        directions.append(("text_to_image", images, image_ids, texts, text_ids, gold, "text_id", "image_ids", ""))
    if config.image_to_text:
        gold = image_to_text_gold(split.texts)
        write_gold(folder / f"{config.split}_texts.tr.jsonl", "image_id", "text_ids", gold)
        directions.append(("image_to_text", texts, text_ids, images, image_ids, gold, "image_id", "text_ids", "tr_"))
    for direction, keys, key_ids, queries, query_ids, gold, query_key, answer_key, prefix in directions:
        predictions_path = folder / f"{config.split}_{prefix}predictions{suffix}.jsonl"
        if "knn" in config.run_steps:
            answers = top_k(config, context, keys, key_ids, queries)
            write_predictions(predictions_path, query_key, answer_key, query_ids, answers)
        if "recall" in config.run_steps:
            predictions = _read_predictions(predictions_path, query_key, answer_key)
            missing = [query for query in gold if query not in predictions]
            if missing:
                raise DataError(
                    f"{predictions_path}: no predictions for {query_key} {missing[0]}"
                    + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
                    + "; run the knn step again"
                )
            r1, r5, r10 = recalls(gold, predictions)
            document = score_document(r1, r5, r10)
            write_scores(folder / f"{direction}_results{suffix}.json", document)
            rows.append(
                {"direction": direction, **{k: document["scoreJson"][k] for k in ("r1", "r5", "r10", "mean_recall")}}
            )
    return rows


def _read_predictions(path: Path, query_key: str, answer_key: str) -> dict[int, list[int]]:
    import json

    if not path.is_file():
        raise DataError(f"{path}: no predictions; run the knn step first (steps including 'knn')")
    predictions = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
                predictions[int(record[query_key])] = [int(item) for item in record[answer_key]]
            except (ValueError, KeyError, TypeError) as error:
                raise DataError(
                    f"{path}, line {number}: not a predictions line ({error}); run the knn step again"
                ) from None
    return predictions


def run(config: RetrievalConfig, context: RunContext) -> Results:
    from esq_clip.recall import check_feature_ids, read_features
    from esq_clip.splits import open_split

    split = open_split(config.datapath, config.dataset, config.split, source=config.data_source)
    context.log.info("%s: %d images, %d texts", split.name, len(split.image_ids), len(split.texts))
    if "knn" in config.run_steps:
        check_sizes(config, split)
    rows = []
    for model_path, name in model_names(config.model_paths).items():
        folder = context.path(name)
        folder.mkdir(parents=True, exist_ok=True)
        if "extract" in config.run_steps:
            try:
                extract(config, model_path, folder, split, context)
            except CheckpointError as error:  # this model's file: the others still run
                context.log.error("%s: %s", name, error)
                rows.append(failed_row(error, model=name))
                continue
        source = folder if "extract" in config.run_steps else None
        images_file, texts_file = features_files(config, name, source)
        if not ({"knn", "recall"} & set(config.run_steps)):  # the features are the result
            rows.append({"model": name, "step": "extract", "images": len(split.image_ids), "texts": len(split.texts)})
            continue
        features = {
            "images": read_features(images_file, "image_id"),
            "texts": read_features(texts_file, "text_id"),
        }
        check_feature_ids(images_file, "image", features["images"][0], split.image_ids, split.name)
        check_feature_ids(texts_file, "text", features["texts"][0], [text[0] for text in split.texts], split.name)
        if features["images"][1].shape[1] != features["texts"][1].shape[1]:
            raise DataError(
                f"{texts_file}: features of {features['texts'][1].shape[1]} values, but {images_file} holds "
                f"{features['images'][1].shape[1]}; extract both with the same model again"
            )
        for row in search_and_score(config, context, folder, split, features, ""):
            rows.append(
                {
                    "model": name,
                    "embeddings": "original",
                    **row,
                    "bits_per_vector": 32.0 * features["images"][1].shape[1],
                }
            )
        if config.quantizer is not None:
            (images, texts), bits = squeeze(config, context, features["images"][1], features["texts"][1])
            squeezed = {"images": (features["images"][0], images), "texts": (features["texts"][0], texts)}
            for row in search_and_score(config, context, folder, split, squeezed, f".{config.quantizer}"):
                rows.append({"model": name, "embeddings": config.quantizer, **row, "bits_per_vector": bits})
    return Results(
        rows=rows, summary={"dataset": split.name, "images": len(split.image_ids), "texts": len(split.texts)}
    )
