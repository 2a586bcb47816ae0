"""Training a segmentation head, with or without a quantizer, on a frozen backbone (Lightning).

``NO_QUANTIZER`` is what ``quantizer`` is set to for the head alone (``esq run baseline``); it is
not a component (the registry's ``identity`` quantizer is one, and costs 32 bits a dimension).
"""

from typing import Any

from esq import ConfigError

NO_QUANTIZER = "none"


def require_segmentation_backbone(backbones: Any, name: str, where: str = "") -> None:
    """A ``ConfigError`` unless ``name`` is an installed segmentation backbone (one with a
    trainable head), listing those that are; ``backbones`` is the backbone registry."""
    spec = backbones.spec(name)
    if spec.task != "segmentation":
        segmentation = [s.name for s in backbones.specs() if s.task == "segmentation"]
        raise ConfigError(
            f"{where + ': ' if where else ''}backbone {name!r} is not a segmentation backbone (it extracts "
            f"features, with no segmentation head); these are: {', '.join(segmentation) or 'none installed'}"
        )
