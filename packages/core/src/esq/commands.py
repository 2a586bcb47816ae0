"""What every ``esq`` command shares, core's and plugins': ``--debug``, ``--plugin`` and the
loaded plugins handed to the command, and the one line an error prints as.

A plugin's command (added in ``esq_commands(cli)``) takes its options the same way::

    @click.command("weights")
    @plugin_options
    def weights(plugins: Plugins) -> None:
        backbones = plugins.registry("backbones")
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import click

from esq.plugins import Plugins, load_plugins, plugin_key

DEBUG_KEY = "esq.debug"
PLUGINS_KEY = "esq.plugins"


def debug_requested(ctx: click.Context) -> bool:
    return bool(ctx.meta.get(DEBUG_KEY)) or os.environ.get("ESQ_DEBUG", "") not in ("", "0")


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[DEBUG_KEY] = True
    return value


debug_option = click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the full traceback of an error (or set ESQ_DEBUG=1).",
)


def context_plugins(ctx: click.Context, requested: tuple[str, ...] = ()) -> Plugins:
    """The plugins for this invocation with ``requested`` extras, loaded once per set asked for
    (the group's plugin commands and the command itself share them)."""
    loaded: dict[tuple[str, ...], Plugins] = ctx.meta.setdefault(PLUGINS_KEY, {})
    key = plugin_key(requested, os.environ)
    if key not in loaded:
        loaded[key] = load_plugins(requested)
    return loaded[key]


def plugin_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--plugin`` (repeatable) and ``--debug``; the command receives ``plugins``, the loaded
    set with those extras."""

    @functools.wraps(command)
    def with_plugins(*args: Any, plugin_values: tuple[str, ...] = (), **kwargs: Any) -> Any:
        return command(*args, plugins=context_plugins(click.get_current_context(), plugin_values), **kwargs)

    decorated = click.option(
        "--plugin",
        "plugin_values",
        multiple=True,
        metavar="MODULE|FILE.py|no:NAME",
        help="Load an extra plugin for this command, or block an installed one with no:NAME "
        "(repeatable; ESQ_PLUGINS does the same, comma-separated).",
    )(with_plugins)
    return debug_option(decorated)
