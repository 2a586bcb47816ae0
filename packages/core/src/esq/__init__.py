"""esq: measure what compressing a vision model's embeddings costs.

A plugin author needs only::

    from esq import hookimpl, registry, BackboneSpec, QuantizerSpec, MetricSpec, \\
        DegradationSpec, RetrieverSpec, PipelineSpec

and checks components with ``esq.testing``. This module does not import torch.
"""

from __future__ import annotations

from esq.components import MetricResult, QuantizerOutput
from esq.config import PipelineConfig
from esq.errors import CheckpointError, ConfigError, DataError, EsqError, PluginError, UnknownNameError
from esq.hookspecs import hookimpl
from esq.lazy import lazy
from esq.plugins import core_version
from esq.registry import KINDS, Registry
from esq.results import Results, RunContext
from esq.specs import (
    BackboneSpec,
    DegradationSpec,
    MetricSpec,
    PipelineSpec,
    QuantizerSpec,
    RetrieverSpec,
)

__version__ = core_version()


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (one of ``esq.KINDS``) over the installed plugins.

    >>> import esq
    >>> "demo" in esq.registry("pipelines").names()
    True
    """
    from esq.plugins import current_plugins

    return current_plugins().registry(kind)


def load_checkpoint(path: str, **expected: object) -> object:
    """The segmentation model saved at ``path`` (an ``esq run squeeze``/``baseline`` ``.ckpt``, or
    the previous tool's ``.pth``), rebuilt from the file alone, in eval mode; see
    :func:`esq.training.checkpoints.load_checkpoint`. Imports torch and Lightning when called."""
    from esq.training.checkpoints import load_checkpoint as load

    return load(path, **expected)


__all__ = [
    "KINDS",
    "BackboneSpec",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DegradationSpec",
    "EsqError",
    "MetricResult",
    "MetricSpec",
    "PipelineConfig",
    "PipelineSpec",
    "PluginError",
    "QuantizerOutput",
    "QuantizerSpec",
    "Registry",
    "Results",
    "RetrieverSpec",
    "RunContext",
    "UnknownNameError",
    "__version__",
    "hookimpl",
    "lazy",
    "load_checkpoint",
    "registry",
]
