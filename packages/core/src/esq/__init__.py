"""esq: measure what compressing a vision model's embeddings costs.

This module is esq's public API, the only part of core a plugin imports (with ``esq.testing``
for the conformance checks). A plugin author needs::

    from esq import hookimpl, BackboneSpec, QuantizerSpec, MetricSpec, DegradationSpec, \\
        RetrieverSpec, PipelineSpec

the errors (``ConfigError``, ``DataError``...), the validation vocabulary (``check_int``, ``check_device``,
``check_number``, ``check_choice``, ``check_bool``, ``as_matrix``, ``paired_features``,
``two_samples``), ``WithOptions``, ``failed_row`` (a result row that could not be computed),
atomic writes (``write_atomic``, ``open_atomic``), ``fit_quantizer`` (a quantizer calibrated and
fitted on a feature matrix), ``load_torch_file`` (a torch file read
safely, its checksums verified), and for a command ``plugin_options``,
``format_options`` (``--format``/``--json``) with ``print_rows``,
``print_table`` and ``print_json``. This module does not import torch.
"""

from __future__ import annotations

from esq.commands import plugin_options
from esq.components import MetricResult, QuantizerOutput
from esq.config import PipelineConfig, build_config, config_layers
from esq.console import stderr
from esq.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    EsqError,
    PluginError,
    RunInterrupted,
    UnknownNameError,
    error_line,
)
from esq.files import open_atomic, to_json, write_atomic
from esq.hookspecs import hookimpl
from esq.lazy_import import lazy
from esq.names import did_you_mean
from esq.options import WithOptions, options_of
from esq.output import format_options, print_json, print_rows, print_table
from esq.plugins import Plugins, core_version, load_plugins
from esq.progress import Progress, progress
from esq.quantizer_fitting import fit_quantizer
from esq.registries import KINDS, Registry, check_options
from esq.results import Results, RunContext, failed_row
from esq.run_directories import run_file_name
from esq.runner import share_run_directory
from esq.specs import (
    BackboneSpec,
    DegradationSpec,
    MetricSpec,
    PipelineSpec,
    QuantizerSpec,
    RetrieverSpec,
)
from esq.topk import TopKIndex, exact_top_k
from esq.torch_files import load_torch_file, verify_torch_file
from esq.validation import (
    as_matrix,
    check_bool,
    check_choice,
    check_device,
    check_folder,
    check_int,
    check_number,
    paired_features,
    two_samples,
)

__version__ = core_version()


def registry(kind: str, plugins: Plugins | None = None) -> Registry:
    """The registry of ``kind`` (one of ``esq.KINDS``) over ``plugins``, by default the plugins
    installed now (loaded afresh on each call: a pipeline uses ``context.registry`` instead).

    >>> import esq
    >>> "demo" in esq.registry("pipelines").names()
    True
    """
    return (plugins if plugins is not None else load_plugins()).registry(kind)


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
    "Plugins",
    "Progress",
    "QuantizerOutput",
    "QuantizerSpec",
    "Registry",
    "Results",
    "RetrieverSpec",
    "RunContext",
    "RunInterrupted",
    "TopKIndex",
    "UnknownNameError",
    "WithOptions",
    "__version__",
    "as_matrix",
    "build_config",
    "check_bool",
    "check_choice",
    "check_device",
    "check_folder",
    "check_int",
    "check_number",
    "check_options",
    "config_layers",
    "did_you_mean",
    "error_line",
    "exact_top_k",
    "failed_row",
    "fit_quantizer",
    "format_options",
    "hookimpl",
    "lazy",
    "load_plugins",
    "load_torch_file",
    "open_atomic",
    "options_of",
    "paired_features",
    "plugin_options",
    "print_json",
    "print_rows",
    "print_table",
    "progress",
    "registry",
    "run_file_name",
    "share_run_directory",
    "stderr",
    "to_json",
    "two_samples",
    "verify_torch_file",
    "write_atomic",
]
