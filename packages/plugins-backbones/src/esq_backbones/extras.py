"""Optional dependencies: a backbone that needs one says which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from esq import ConfigError


def import_extra(module: str, backbone: str, extra: str) -> ModuleType:
    """``module``, or a ``ConfigError`` naming the ``esq-backbones[extra]`` install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"{backbone} needs the optional package {module!r} ({error}); "
            f"install it with: pip install 'esq-backbones[{extra}]'"
        ) from error
