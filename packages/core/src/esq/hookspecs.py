"""The hooks a plugin implements. Project name ``"esq"``, entry-point group ``esq``.

A plugin is a module (or object) with functions named after these hooks and decorated with
``esq.hookimpl``; it is found through an entry point in its ``pyproject.toml``::

    [project.entry-points.esq]
    my-plugin = "my_package.plugin"

Each component hook returns a list (or yields) specs. Import heavy libraries inside the
factories, not at module level: ``esq list`` loads every plugin and must stay fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

from esq.specs import (
    BackboneSpec,
    DegradationSpec,
    MetricSpec,
    PipelineSpec,
    QuantizerSpec,
    RetrieverSpec,
)

if TYPE_CHECKING:
    import click

PROJECT = "esq"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def esq_backbones() -> Iterable[BackboneSpec]:
    """Backbones this plugin provides.

    >>> from esq import BackboneSpec, hookimpl
    >>> from esq.testing import registry_of
    >>> class Plugin:
    ...     @hookimpl
    ...     def esq_backbones(self):
    ...         def build(weights="none"):
    ...             from my_backbones import TinyNet  # heavy import inside the factory
    ...             return TinyNet(weights=weights)
    ...         return [BackboneSpec(name="tiny_net", factory=build, summary="A tiny CNN")]
    >>> registry_of("backbones", Plugin()).names()
    ['tiny_net']
    """


@hookspec
def esq_quantizers() -> Iterable[QuantizerSpec]:
    """Quantizers this plugin provides; each factory takes ``input_dim`` among its options.

    >>> from esq import QuantizerSpec, hookimpl
    >>> from esq.testing import registry_of
    >>> class Plugin:
    ...     @hookimpl
    ...     def esq_quantizers(self):
    ...         def build(input_dim, bits=8):
    ...             from my_quantizers import SignQuantizer
    ...             return SignQuantizer(input_dim, bits)
    ...         return [QuantizerSpec(name="sign", factory=build, summary="Sign bits")]
    >>> registry_of("quantizers", Plugin()).spec("sign").summary
    'Sign bits'
    """


@hookspec
def esq_metrics() -> Iterable[MetricSpec]:
    """Metrics this plugin provides: ``kind`` "similarity" or "distribution".

    >>> import numpy as np
    >>> from esq import MetricResult, MetricSpec, hookimpl
    >>> from esq.testing import registry_of
    >>> class MeanCosine:
    ...     def __call__(self, x, y):
    ...         x = x / np.linalg.norm(x, axis=1, keepdims=True)
    ...         y = y / np.linalg.norm(y, axis=1, keepdims=True)
    ...         return MetricResult(float((x * y).sum(axis=1).mean()))
    >>> class Plugin:
    ...     @hookimpl
    ...     def esq_metrics(self):
    ...         return [MetricSpec(name="mean_cosine", factory=MeanCosine, kind="similarity",
    ...                            higher_is_better=True, range=(-1.0, 1.0),
    ...                            summary="Mean cosine similarity of paired rows")]
    >>> metric = registry_of("metrics", Plugin()).create("mean_cosine")
    >>> metric(np.eye(3), np.eye(3)).value
    1.0
    """


@hookspec
def esq_degradations() -> Iterable[DegradationSpec]:
    """Image degradations this plugin provides (``apply(images, level, seed)``, ``levels``).

    >>> from esq import DegradationSpec, hookimpl
    >>> from esq.testing import registry_of
    >>> class Plugin:
    ...     @hookimpl
    ...     def esq_degradations(self):
    ...         def build(levels=(1.0, 2.0, 4.0)):
    ...             from my_degradations import Blur
    ...             return Blur(levels)
    ...         return [DegradationSpec(name="blur", factory=build, summary="Box blur")]
    >>> registry_of("degradations", Plugin()).names()
    ['blur']
    """


@hookspec
def esq_retrievers() -> Iterable[RetrieverSpec]:
    """Retrievers this plugin provides (``index(keys)``, ``search(queries, k)``).

    >>> from esq import RetrieverSpec, hookimpl
    >>> from esq.testing import registry_of
    >>> class Plugin:
    ...     @hookimpl
    ...     def esq_retrievers(self):
    ...         def build(metric="ip"):
    ...             from my_retrievers import Exact
    ...             return Exact(metric)
    ...         return [RetrieverSpec(name="exact_ip", factory=build, summary="Exact top-k")]
    >>> registry_of("retrievers", Plugin()).spec("exact_ip").exact
    True
    """


@hookspec
def esq_pipelines() -> Iterable[PipelineSpec]:
    """Pipelines for ``esq run NAME``: a config dataclass and ``run(config, context)``.

    >>> from dataclasses import dataclass
    >>> from esq import PipelineConfig, PipelineSpec, Results, hookimpl
    >>> from esq.testing import registry_of
    >>> @dataclass
    ... class CountConfig(PipelineConfig):
    ...     up_to: int = 3
    >>> def count(config, context):
    ...     return Results(rows=[{"n": n} for n in range(config.up_to)])
    >>> class Plugin:
    ...     @hookimpl
    ...     def esq_pipelines(self):
    ...         return [PipelineSpec(name="count", config=CountConfig, run=count,
    ...                              summary="Count to up_to")]
    >>> registry_of("pipelines", Plugin()).create("count", up_to=5).up_to
    5
    """


@hookspec
def esq_commands(cli: click.Group) -> None:
    """Add commands to the ``esq`` command line (``cli`` is the top-level click group).

    >>> import click
    >>> from esq import hookimpl
    >>> class Plugin:
    ...     @hookimpl
    ...     def esq_commands(self, cli):
    ...         @cli.command()
    ...         def hello():
    ...             "Say hello."
    ...             click.echo("hello")
    >>> group = click.Group("esq")
    >>> Plugin().esq_commands(group)
    >>> sorted(group.commands)
    ['hello']
    """
