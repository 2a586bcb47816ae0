"""Compatibility with the previous tools, in one place: their option spellings and names, and
their raw ``.pth`` checkpoints.

- ``--model vit`` / ``deeplab`` (``MODEL_ALIASES``) name ``vit_b_32`` / ``deeplabv3_resnet50``;
  ``experiment_name`` is the run's ``name``; ``use_clearml`` is refused with the way to MLflow.
- The previous tool's ``.pth`` files load into esq's ``SegmentationModule`` (``module_from_legacy``).

Such a file is a dict:

| key | holds |
|---|---|
| ``method`` | the quantizer (``vq``, ``fsq``, ``lfq``, ``rvq``...; ``baseline`` or ``none``: no quantizer) |
| ``backbone_state_dict`` | the backbone network's weights (torchvision/timm keys; ``module.``, ``model.`` dropped) |
| ``classifier_state_dict`` | the segmentation head |
| ``quantizer_state_dict`` | the quantizer with its projections (esq's quantizer keys) |
| ``has_encoder_adapter``, ``encoder_adapter_state_dict`` | a residual adapter before the quantizer |
| ``has_decoder_adapter``, ``decoder_adapter_state_dict`` | one after it |

The adapters are ``x + Conv1×1(ReLU(BN(Conv3×3(x))))``; their weights are matched in order
(conv, BN, conv), whatever the previous tool named them. The file does not name the backbone:
``backbone=`` does, or esq finds the segmentation backbone whose network has exactly these keys
and shapes. ``num_classes`` comes from the head's last layer; the quantizer's ``bottleneck_dim``,
``codebook_size`` and ``num_quantizers`` from its weights' shapes (``quantizer_options=`` for the
rest, e.g. FSQ ``levels``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from esq import CheckpointError, ConfigError, EsqError
from esq.builtin.training import NO_QUANTIZER

if TYPE_CHECKING:
    import torch

    from esq.builtin.training.module import SegmentationModule

# the previous tools' --model choices
MODEL_ALIASES = {"vit": "vit_b_32", "deeplab": "deeplabv3_resnet50"}

LEGACY_KEYS = (
    "method",
    "backbone_state_dict",
    "classifier_state_dict",
    "quantizer_state_dict",
    "encoder_adapter_state_dict",
    "decoder_adapter_state_dict",
    "has_encoder_adapter",
    "has_decoder_adapter",
)
NO_QUANTIZER_METHODS = ("baseline", "none", None)
PREFIXES = ("module.", "model.")


def backbone_name(name: str) -> str:
    """The registered backbone a previous tool's ``--model`` means (``vit`` -> ``vit_b_32``)."""
    return MODEL_ALIASES.get(name, name)


def run_name(name: str, experiment_name: str) -> str:
    """The run's ``name``: the previous tools called it ``experiment_name``."""
    return name or experiment_name


def refuse_clearml(use_clearml: bool) -> None:
    """The previous tool logged to ClearML; esq does not, and says what to use instead."""
    if use_clearml:
        raise ConfigError(
            "use_clearml: esq does not log to ClearML; --logger mlflow logs to MLflow under project_name and "
            "task_name (CSV and TensorBoard logs are always on by default)"
        )


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = {}
    for key, value in state.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        stripped[key] = value
    return stripped


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in state.items()}


def _find_backbone(path: Path, network: dict[str, torch.Tensor], num_classes: int, backbones: Any) -> str:
    """The segmentation backbone whose random-init network has exactly ``network``'s keys and shapes."""
    wanted = _shapes(network)
    # the small ones first: building a random ViT-B or DeepLab takes seconds
    names = sorted(
        (spec.name for spec in backbones.specs() if spec.task == "segmentation"), key=lambda n: "tiny" not in n
    )
    for name in names:
        candidate = backbones.create(name, num_classes=num_classes, weights="none")
        if _shapes(candidate.network.state_dict()) == wanted:
            return name
    raise CheckpointError(
        f"{path}: its backbone_state_dict fits none of the segmentation backbones ({', '.join(names)}); "
        "pass backbone= naming the one it was trained with"
    )


def _quantizer_options(method: str, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """What the quantizer's weight shapes say about its options."""
    options: dict[str, Any] = {}
    if "project_in.weight" in state:
        options["bottleneck_dim"] = int(state["project_in.weight"].shape[0])
    levels = sorted({key.split(".")[2] for key in state if key.startswith("library.layers.")})
    if levels:
        options["num_quantizers"] = len(levels)
    for key, value in state.items():
        if key.endswith("_codebook.embed"):
            options["codebook_size"] = int(value.shape[-2])
            break
    if method == "lfq" and "library.project_in.weight" in state:
        options["codebook_size"] = 2 ** int(state["library.project_in.weight"].shape[0])
    return options


def _adapter_state(path: Path, name: str, state: dict[str, torch.Tensor], target: torch.nn.Module) -> dict:
    """``state`` renamed to ``target``'s keys, matched in order with equal shapes."""
    ours = target.state_dict()
    theirs = list(_strip(state).items())
    if len(theirs) != len(ours) or any(
        tuple(value.shape) != tuple(ours[key].shape) for key, (_, value) in zip(ours, theirs, strict=False)
    ):
        raise CheckpointError(
            f"{path}: {name} does not hold a residual adapter (Conv3×3, BN, ReLU, Conv1×1) of "
            f"{target.block[0].in_channels} channels: {len(theirs)} tensors {[tuple(v.shape) for _, v in theirs][:4]}"
        )
    return {key: value for key, (_, value) in zip(ours, theirs, strict=True)}


def module_from_legacy(
    path: str | Path,
    checkpoint: dict[str, Any],
    plugins: Any,
    *,
    backbone: str | None = None,
    quantizer: str | None = None,
    num_classes: int | None = None,
    quantizer_options: dict[str, Any] | None = None,
) -> SegmentationModule:
    """The previous tool's ``.pth`` as a ``SegmentationModule`` in eval mode."""
    from esq.builtin.training.checkpoint_state import check_matches, checked_state, module_from_state
    from esq.builtin.training.module import SegmentationModule

    path = Path(path)
    missing = [key for key in ("method", "backbone_state_dict", "classifier_state_dict") if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{path}: a raw .pth checkpoint without {', '.join(missing)}; found keys {', '.join(sorted(checkpoint))}"
        )
    method = checkpoint["method"]
    if method is not None and not isinstance(method, str):
        raise CheckpointError(f"{path}: its method is {method!r}, expected a quantizer name such as 'vq' or 'baseline'")
    found_quantizer = NO_QUANTIZER if method in NO_QUANTIZER_METHODS else str(method)
    for side in ("encoder", "decoder"):
        declared, key = checkpoint.get(f"has_{side}_adapter", False), f"{side}_adapter_state_dict"
        if not isinstance(declared, bool):
            raise CheckpointError(f"{path}: has_{side}_adapter is {declared!r}, expected true or false")
        if declared and not checkpoint.get(key):
            raise CheckpointError(
                f"{path}: has_{side}_adapter is true but {key} is {'missing' if key not in checkpoint else 'empty'}; "
                "the file is incomplete: use a complete copy"
            )
    if found_quantizer != NO_QUANTIZER and not checkpoint.get("quantizer_state_dict"):
        raise CheckpointError(
            f"{path}: its method is {method!r} but quantizer_state_dict is "
            f"{'missing' if 'quantizer_state_dict' not in checkpoint else 'empty'}; the file is incomplete: "
            "use a complete copy"
        )
    network = _strip(checked_state(path, "backbone_state_dict", checkpoint["backbone_state_dict"]))
    head = _strip(checked_state(path, "classifier_state_dict", checkpoint["classifier_state_dict"]))
    weights = [value for value in head.values() if value.ndim == 4]
    if not weights:
        raise CheckpointError(f"{path}: classifier_state_dict holds no convolution weights; is it a segmentation head?")
    classes = int(weights[-1].shape[0])
    check_matches(
        path,
        {"quantizer": found_quantizer, "num_classes": classes},
        {"quantizer": quantizer, "num_classes": num_classes},
    )
    name = backbone or _find_backbone(path, network, classes, plugins.registry("backbones"))
    quantizer_state = _strip(checked_state(path, "quantizer_state_dict", checkpoint.get("quantizer_state_dict") or {}))
    options = {}
    if found_quantizer != NO_QUANTIZER:
        options = {**_quantizer_options(found_quantizer, quantizer_state), **(quantizer_options or {})}
    hparams = {
        "backbone": name,
        "num_classes": classes,
        "backbone_options": {},
        "quantizer": found_quantizer,
        "quantizer_options": options,
        "encoder_adapter": bool(checkpoint.get("has_encoder_adapter", False)),
        "decoder_adapter": bool(checkpoint.get("has_decoder_adapter", False)),
    }
    try:
        module = SegmentationModule(**hparams, pretrained=False, plugins=plugins)
    except EsqError as error:
        raise CheckpointError(f"{path}: what it holds does not build a model here: {error}") from None
    state = {f"model.backbone.network.{key}": value for key, value in network.items()}
    state.update({f"model.backbone.head.{key}": value for key, value in head.items()})
    state.update({f"model.quantizer.{key}": value for key, value in quantizer_state.items()})
    for side in ("encoder", "decoder"):
        adapter = getattr(module.model, f"{side}_adapter")
        if adapter is not None:
            name = f"{side}_adapter_state_dict"
            adapted = _adapter_state(path, name, checked_state(path, name, checkpoint[name]), adapter)
            state.update({f"model.{side}_adapter.{key}": value for key, value in adapted.items()})
    return module_from_state(path, dict(module.hparams), state, plugins, module)
