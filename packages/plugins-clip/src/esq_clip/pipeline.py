"""``esq run retrieval``: Chinese-CLIP retrieval evaluation, the official scripts' job on any
machine: extract features, top-k search, Recall@1/5/10 text→image and image→text, for one or
several checkpoints side by side, and optionally on embeddings squeezed by a quantizer.

Each model's files go to ``<run>/<model>/`` under the official names (see :mod:`esq_clip.recall`);
a step run on its own finds its inputs as :mod:`esq_clip.sources` says.
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
    check_folder,
    check_int,
    check_number,
    failed_row,
    run_file_name,
    write_atomic,
)
from esq_clip.recall import TOP_K

STEPS = ("extract", "knn", "recall")


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
    skip_extraction: bool = field(default=False, metadata={"help": "the steps without extract, as the official flag"})
    features_dir: str | None = field(
        default=None,
        metadata={
            "help": "without the extract step: a previous run's folder (its <model>/ files, or those it records); "
            "default: <datapath>/datasets/<dataset>/, where Chinese-CLIP's own scripts write them"
        },
    )
    text_to_image: bool = field(default=True, metadata={"negative": "skip-text-to-image"})
    image_to_text: bool = field(default=True, metadata={"negative": "skip-image-to-text"})
    retriever: str = "exact"
    retriever_options: dict[str, Any] = field(default_factory=dict)
    quantizer: str | None = field(default=None, metadata={"help": "also score embeddings squeezed by it"})
    quantizer_options: dict[str, Any] = field(default_factory=dict)
    fit_on: Literal["both", "images", "texts"] = field(
        default="both", metadata={"help": "the embeddings the quantizer is fitted on: gallery images and query texts"}
    )
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
    checkpoints and the inputs of the steps asked for (features, predictions) are there, and the
    backbone, the retriever and the quantizer are installed and take their options."""
    from esq_clip.splits import locate_split

    owner = "retrieval"
    if not config.datapath:
        raise ConfigError("datapath is required: the folder holding datasets/<dataset>/ (--set datapath=...)")
    steps = config.run_steps
    if not steps:
        raise ConfigError(f"steps is empty; choose from {', '.join(STEPS)}")
    if not (config.text_to_image or config.image_to_text):
        raise ConfigError("text_to_image and image_to_text are both off: nothing to search")
    if not config.model_paths:
        raise ConfigError("model_paths is empty; give a checkpoint, or 'none' for random weights")
    names = model_names(config.model_paths)
    if config.features_dir is not None:
        check_folder("features_dir", config.features_dir, "the run folder of an earlier step (esq run retrieval)")
    if "extract" not in steps and config.features_dir is None and len(names) > 1:
        raise ConfigError(
            f"features_dir: {len(names)} models, but without it the files are read from "
            f"{Path(config.datapath) / 'datasets' / config.dataset}, which holds one model's; "
            "give --features-dir a run folder with a <model>/ folder each"
        )
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
    else:
        for name in names.values():
            if "knn" in steps:
                locate_features(config, name)
            else:
                locate_predictions(config, name)
    if "knn" in steps:
        plugins.registry("retrievers").check(config.retriever, **config.retriever_options)
        if config.quantizer is not None:
            dimension = feature_dim(config, next(iter(names.values())))
            plugins.registry("quantizers").check(config.quantizer, input_dim=dimension, **config.quantizer_options)


def feature_dim(config: RetrievalConfig, name: str) -> int:
    """The dimension of the embeddings the quantizer will see: the model's, or that of the
    features found for the model called ``name``."""
    import json

    if "extract" in config.run_steps:
        from esq_clip.models import model_info

        return int(model_info(config.vision_model, config.text_model)["embed_dim"])
    path = locate_features(config, name) / feature_names(config)[0]
    with open(path, encoding="utf-8") as handle:
        try:
            return len(json.loads(handle.readline())["feature"])
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path}, line 1: not a features line ({error}); extract again") from None


def feature_names(config: RetrievalConfig) -> tuple[str, str]:
    """The official names of the image and the text features files of the split."""
    return f"{config.split}_imgs.img_feat.jsonl", f"{config.split}_texts.txt_feat.jsonl"


def directions(config: RetrievalConfig) -> list[tuple[str, str]]:
    """The directions searched, each with the prefix of its predictions file (``tr_``: image→text)."""
    return [
        (direction, prefix)
        for direction, prefix, wanted in (
            ("text_to_image", "", config.text_to_image),
            ("image_to_text", "tr_", config.image_to_text),
        )
        if wanted
    ]


def embeddings(config: RetrievalConfig) -> dict[str, str]:
    """The embeddings scored, each with the suffix its files carry: ``{"original": "", "vq": ".vq"}``."""
    return {"original": "", **({config.quantizer: f".{config.quantizer}"} if config.quantizer else {})}


def predictions_name(config: RetrievalConfig, prefix: str, suffix: str) -> str:
    return f"{config.split}_{prefix}predictions{suffix}.jsonl"


def _start(config: RetrievalConfig, name: str) -> Path:
    """Where the model's inputs are looked for first: ``features_dir/<model>``, or without it
    Chinese-CLIP's own ``<datapath>/datasets/<dataset>``."""
    from esq_clip.splits import dataset_folder

    if config.features_dir is not None:
        return Path(config.features_dir) / name
    return dataset_folder(Path(config.datapath), config.dataset)


def locate_features(config: RetrievalConfig, name: str) -> Path:
    """The folder holding the features of the model called ``name`` (:mod:`esq_clip.sources`)."""
    from esq_clip.sources import SOURCES_FILE, find_folder

    start = _start(config, name)
    found = find_folder(start, feature_names(config), "features")
    if found is not None:
        return found
    images, texts = feature_names(config)
    if fix := _model_folder_fix(config):
        raise DataError(f"features_dir: no {start / images}; {fix}")
    if config.features_dir is None:
        raise DataError(
            f"{start / images}: no such file (Chinese-CLIP's extract_features.py writes {images} and {texts} there); "
            "extract them first (--step extract), or give --features-dir the run folder that holds them"
        )
    raise DataError(
        f"features_dir: no {start / images} (model {name!r}), nor a {SOURCES_FILE} there naming the run that has it; "
        "extract it first (--step extract) and give that run's folder"
    )


def _model_folder_fix(config: RetrievalConfig) -> str:
    """The fix when ``features_dir`` names one model's folder instead of the run folder above it."""
    from esq_clip.sources import SOURCES_FILE

    given = Path(config.features_dir or "")
    inside = (*feature_names(config), SOURCES_FILE, predictions_name(config, "", ""))
    if config.features_dir is not None and any((given / file).is_file() for file in inside):
        return f"{given} is a model's folder: give --features-dir the run folder above it ({given.parent})"
    return ""


def locate_predictions(config: RetrievalConfig, name: str) -> Path:
    """The folder holding every predictions file the recall step reads for the model ``name``;
    a ``DataError`` says which step is missing."""
    from esq_clip.sources import find_folder

    start = _start(config, name)
    wanted = [
        predictions_name(config, prefix, suffix)
        for suffix in embeddings(config).values()
        for _, prefix in directions(config)
    ]
    found = find_folder(start, wanted, "predictions")
    if found is not None:
        return found
    if fix := _model_folder_fix(config):
        raise DataError(f"features_dir: no {start / wanted[0]}; {fix}")
    missing = next(file for file in wanted if not (start / file).is_file())
    squeezed = (
        f" with --quantizer {config.quantizer}" if config.quantizer and f".{config.quantizer}." in missing else ""
    )
    if find_folder(start, feature_names(config), "features") is not None:
        given = f" --features-dir {config.features_dir}" if config.features_dir else ""
        raise DataError(
            f"{start}: features but no {missing}: the knn step{squeezed} is missing; "
            f"run --step knn{squeezed}{given}, then --step recall --features-dir <the knn run>"
        )
    raise DataError(
        f"{start / missing}: no such file: the knn step{squeezed} is missing; "
        "run --step knn first, then --step recall --features-dir <the knn run>"
    )


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


def extract(config: RetrievalConfig, model_path: str, folder: Path, split: Any, context: RunContext) -> int:
    """Normalised image and text features of the split, in the official features files; returns
    their dimension."""
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
    image_batches = range(0, len(split.image_ids), config.batch_size)
    for start in context.progress(image_batches, f"{folder.name}: image features"):
        ids = split.image_ids[start : start + config.batch_size]
        parts.append(model.encode_images(model.preprocess(split.images(ids))).cpu())
    images_file, texts_file = (folder / file for file in feature_names(config))
    write_features(images_file, "image_id", split.image_ids, torch.cat(parts))
    texts = [text for _, text, _ in split.texts]
    text_parts = [
        model.encode_texts(texts[start : start + config.batch_size]).cpu()
        for start in context.progress(range(0, len(texts), config.batch_size), f"{folder.name}: text features")
    ]
    write_features(texts_file, "text_id", [text_id for text_id, _, _ in split.texts], torch.cat(text_parts))
    context.log.info("%s: %d image and %d text features", folder.name, len(split.image_ids), len(texts))
    return int(text_parts[0].shape[1])


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


USAGE_FLOOR = 0.10  # below this share of the codebook, recall measures a collapsed code


def squeeze(
    config: RetrievalConfig, context: RunContext, folder: Path, features: dict[str, Any], gold_images: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both modalities through a quantizer fitted on ``fit_on`` (default: images and texts
    together), re-normalised; and the facts of the squeeze: bits per vector and, per modality,
    codebook usage, perplexity, dead codes, distinct codes (whole-vector code tuples) and the
    reconstruction error (mean squared distance to the unit-norm original). The codes are saved
    beside the features, rows in the features' order: bit-packed by the quantizer's spec
    (``{split}_imgs.codes.<quantizer>.esq``, read with ``esq_quantizers.unpack``; their size is
    ``<modality>_code_bytes``) or, for a quantizer without ``pack``, ``….codes.<quantizer>.npy``; and
    a collapse (usage under 10%, fewer distinct codes than the queries' distinct gold images) is a
    warning."""
    import io

    import numpy as np
    import torch

    from esq import fit_quantizer

    (image_ids, images), (text_ids, texts) = features["images"], features["texts"]
    name = config.quantizer
    spec = context.registry("quantizers").spec(name)
    quantizer = context.registry("quantizers").create(name, input_dim=images.shape[1], **config.quantizer_options)
    fit = {"both": torch.cat([images, texts]), "images": images, "texts": texts}[config.fit_on]
    steps = context.progress(range(config.quantizer_steps), f"{folder.name}: fitting {name}")
    fit_quantizer(quantizer, fit.unsqueeze(0), steps, config.learning_rate)
    bits = float(quantizer.bits_per_vector)
    facts: dict[str, Any] = {"bits_per_vector": int(bits) if bits.is_integer() else bits, "fit_on": config.fit_on}
    squeezed = {}
    with torch.no_grad():
        for modality, ids, original, stem in (
            ("images", image_ids, images, f"{config.split}_imgs"),
            ("texts", text_ids, texts, f"{config.split}_texts"),
        ):
            output = quantizer(original.unsqueeze(0))
            quantized = output.quantized.squeeze(0).float()
            encoded = quantizer.encode(original.unsqueeze(0))
            codes = encoded.reshape(len(original), -1).cpu()
            if spec.pack is not None:
                packed = Path(spec.pack(encoded, quantizer, folder / f"{stem}.codes.{name}.esq"))
                facts[f"{modality}_code_bytes"] = packed.stat().st_size
            else:
                buffer = io.BytesIO()
                np.save(buffer, codes.numpy())
                write_atomic(folder / f"{stem}.codes.{name}.npy", buffer.getvalue())
            distinct = len(torch.unique(codes, dim=0))
            for stat in ("codebook_usage", "perplexity", "dead_codes"):
                if stat in output.stats:
                    facts[f"{modality}_{stat}"] = float(output.stats[stat])
            facts[f"{modality}_distinct_codes"] = distinct
            facts[f"{modality}_reconstruction_error"] = float(((quantized - original) ** 2).sum(-1).mean())
            usage = facts.get(f"{modality}_codebook_usage")
            if usage is not None and usage < USAGE_FLOOR:
                context.log.warning(
                    "%s, %s: the %s use %.1f%% of the codebook (under %d%%): the recall below measures a "
                    "collapsed code; fit longer (--quantizer-steps) or choose a smaller codebook",
                    folder.name, name, modality, 100 * usage, 100 * USAGE_FLOOR,
                )  # fmt: skip
            if distinct < gold_images:
                context.log.warning(
                    "%s, %s: the %d %s take %d distinct code%s, fewer than the %d distinct gold images of the "
                    "queries: tied embeddings rank by id, so recall here says little about the model",
                    folder.name, name, len(original), modality, distinct, "" if distinct == 1 else "s", gold_images,
                )  # fmt: skip
            squeezed[modality] = (ids, quantized / quantized.norm(dim=-1, keepdim=True).clamp_min(1e-12))
    return squeezed, facts


def _reading(context: RunContext, path: Path) -> Any:
    """A progress display for reading the lines of ``path``."""
    return lambda lines: context.progress(lines, f"reading {path.name}")


def read_checked_features(config: RetrievalConfig, context: RunContext, source: Path, split: Any) -> dict[str, Any]:
    """The features in ``source``, checked against the split: the same ids, one dimension."""
    from esq_clip.recall import check_feature_ids, read_features

    images_file, texts_file = (source / file for file in feature_names(config))
    features = {
        kind: read_features(file, key, progress=_reading(context, file))
        for kind, file, key in (("images", images_file, "image_id"), ("texts", texts_file, "text_id"))
    }
    check_feature_ids(images_file, "image", features["images"][0], split.image_ids, split.name)
    check_feature_ids(texts_file, "text", features["texts"][0], [text[0] for text in split.texts], split.name)
    if features["images"][1].shape[1] != features["texts"][1].shape[1]:
        raise DataError(
            f"{texts_file}: features of {features['texts'][1].shape[1]} values, but {images_file} holds "
            f"{features['images'][1].shape[1]}; extract both with the same model again"
        )
    return features


def predict(config: RetrievalConfig, context: RunContext, folder: Path, features: dict[str, Any], suffix: str) -> None:
    """The top 10 in each direction for one set of embeddings, in the official predictions files."""
    from esq_clip.recall import write_predictions

    image_ids, images = features["images"]
    text_ids, texts = features["texts"]
    for direction, prefix in directions(config):
        keys, key_ids, queries, query_ids, query_key, answer_key = (
            (images, image_ids, texts, text_ids, "text_id", "image_ids")
            if direction == "text_to_image"
            else (texts, text_ids, images, image_ids, "image_id", "text_ids")
        )
        answers = top_k(config, context, keys, key_ids, queries)
        write_predictions(folder / predictions_name(config, prefix, suffix), query_key, answer_key, query_ids, answers)


def score(
    config: RetrievalConfig, context: RunContext, folder: Path, source: Path, split: Any, suffix: str
) -> list[dict[str, Any]]:
    """Recalls in each direction of the predictions in ``source``; the scores (official files) in ``folder``."""
    from esq_clip.recall import image_to_text_gold, read_predictions, recalls, score_document, write_scores

    rows = []
    text_ids = [text_id for text_id, _, _ in split.texts]
    for direction, prefix in directions(config):
        path = source / predictions_name(config, prefix, suffix)
        if direction == "text_to_image":
            gold = {text_id: list(ids) for text_id, _, ids in split.texts}
            predictions = read_predictions(
                path, "text_id", "image_ids", text_ids, split.image_ids, split.name, _reading(context, path)
            )
        else:
            gold = image_to_text_gold(split.texts)
            predictions = read_predictions(
                path, "image_id", "text_ids", split.image_ids, text_ids, split.name, _reading(context, path)
            )
        missing = [query for query in gold if query not in predictions]
        if missing:
            query_key = "text_id" if direction == "text_to_image" else "image_id"
            raise DataError(
                f"{path}: no predictions for {query_key} {missing[0]}"
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


def run(config: RetrievalConfig, context: RunContext) -> Results:
    from esq_clip.recall import image_to_text_gold, write_gold
    from esq_clip.sources import read_sources, write_sources
    from esq_clip.splits import open_split

    split = open_split(config.datapath, config.dataset, config.split, source=config.data_source)
    context.log.info("%s: %d images, %d texts", split.name, len(split.image_ids), len(split.texts))
    steps = config.run_steps
    if "knn" in steps:
        check_sizes(config, split)
    gold_images = len({image_id for _, _, image_ids in split.texts for image_id in image_ids})
    rows: list[dict[str, Any]] = []
    for model_path, name in model_names(config.model_paths).items():
        folder = context.path(name)
        folder.mkdir(parents=True, exist_ok=True)
        if config.image_to_text and "recall" in steps:  # the image→text gold, as cn-clip's transform writes it
            write_gold(
                folder / f"{config.split}_texts.tr.jsonl", "image_id", "text_ids", image_to_text_gold(split.texts)
            )
        facts: dict[str, dict[str, Any]] = {}
        features_source: Path | None = None
        if "extract" in steps:
            try:
                dimension = extract(config, model_path, folder, split, context)
            except CheckpointError as error:  # this model's file: the others still run
                context.log.error("%s: %s", name, error)
                rows.append(failed_row(error, model=name))
                continue
            features_source = folder
            facts["original"] = {"bits_per_vector": 32 * dimension}
            if steps == ["extract"]:  # the features are the result
                write_sources(folder, folder, None, facts)
                files = {
                    kind: f"{name}/{file}"
                    for kind, file in zip(("image_features", "text_features"), feature_names(config), strict=True)
                }
                rows.append(
                    {
                        "model": name,
                        "step": "extract",
                        "images": len(split.image_ids),
                        "texts": len(split.texts),
                        "dimension": dimension,
                        **files,
                    }
                )
                continue
        if "knn" in steps:
            features_source = features_source or locate_features(config, name)
            features = read_checked_features(config, context, features_source, split)
            facts["original"] = {"bits_per_vector": 32 * features["images"][1].shape[1]}
            predict(config, context, folder, features, "")
            if config.quantizer is not None:
                squeezed, facts[config.quantizer] = squeeze(config, context, folder, features, gold_images)
                predict(config, context, folder, squeezed, f".{config.quantizer}")
            predictions_source = folder
        else:
            predictions_source = locate_predictions(config, name)
            recorded = read_sources(predictions_source)
            features_source = Path(recorded["features"]) if isinstance(recorded.get("features"), str) else None
            if isinstance(recorded.get("embeddings"), dict):
                facts = {
                    label: dict(value) for label, value in recorded["embeddings"].items() if isinstance(value, dict)
                }
        write_sources(folder, features_source, predictions_source, facts)
        for label, suffix in embeddings(config).items():
            if "recall" in steps:
                scored = score(config, context, folder, predictions_source, split, suffix)
            else:  # knn alone: the predictions are the result
                scored = [
                    {
                        "direction": direction,
                        "step": "knn",
                        "predictions": f"{name}/{predictions_name(config, prefix, suffix)}",
                    }
                    for direction, prefix in directions(config)
                ]
            rows += [{"model": name, "embeddings": label, **row, **facts.get(label, {})} for row in scored]
    return Results(
        rows=rows, summary={"dataset": split.name, "images": len(split.image_ids), "texts": len(split.texts)}
    )
