"""Checks the built-in pipelines run on a config before the run directory exists: each component
is installed, is of the right sort, and accepts its options (``Registry.check`` builds it on
torch's meta device, so a refused value or a missing weights file is found here)."""

from __future__ import annotations

import importlib.util
from typing import Any

from esq import ConfigError
from esq.builtin.training import require_segmentation_backbone

# the width a quantizer is checked with: any width builds the same checks
CHECK_INPUT_DIM = 16
LOGGER_MODULES = {"csv": None, "tensorboard": "tensorboardX", "mlflow": "mlflow"}


def _where(where: str, check: Any, *args: Any, **options: Any) -> None:
    try:
        check(*args, **options)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None


def check_segmentation_backbone(backbones: Any, name: str, options: dict[str, Any], where: str) -> None:
    """``name`` is an installed segmentation backbone (one with a trainable head) that takes ``options``."""
    require_segmentation_backbone(backbones, name, where)
    _where(where, backbones.check, name, **{"num_classes": 2, **options})


def check_quantizer(quantizers: Any, name: str, options: dict[str, Any], where: str) -> None:
    """``name`` is an installed quantizer that accepts ``options`` (values included)."""
    _where(where, quantizers.check, name, **{"input_dim": CHECK_INPUT_DIM, **options})


def check_loss(name: str, options: dict[str, Any]) -> None:
    """The segmentation loss ``name`` exists and takes ``options`` (built for two classes)."""
    from esq.builtin.training.losses import segmentation_loss

    _where("loss_options", segmentation_loss, name, 2, **options)


def check_loggers(loggers: list[str]) -> None:
    """Each training logger is one esq knows and whose library is installed."""
    for name in loggers:
        if name not in LOGGER_MODULES:
            raise ConfigError(f"loggers: {name!r} is not one of {', '.join(LOGGER_MODULES)}")
        module = LOGGER_MODULES[name]
        if module is not None and importlib.util.find_spec(module) is None:
            raise ConfigError(f"loggers: {name} is not installed; pip install {module}, or drop it")
