"""The ``esq`` group: lazy core subcommands, plugins' commands, and one-line errors.

Core subcommands are imported only when used, and nothing here imports torch, so ``esq --help``,
``esq plugins`` and ``esq list`` start fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from esq.console import OnceFilter
from esq.errors import EsqError
from esq.plugins import core_version, use_plugins

CORE_COMMANDS = {
    "cache": ("esq.cli.cache_command", "cache"),
    "list": ("esq.cli.list_command", "list_components"),
    "plugins": ("esq.cli.plugins_command", "plugins"),
    "run": ("esq.cli.run_command", "run"),
}
DEBUG_KEY = "esq.debug"


def _debug_requested(ctx: click.Context) -> bool:
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


def plugin_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--plugin`` (repeatable) and ``--debug``, shared by the commands that use plugins."""
    command = click.option(
        "--plugin",
        "plugin_values",
        multiple=True,
        metavar="MODULE|FILE.py|no:NAME",
        help="Load an extra plugin for this command, or block an installed one with no:NAME "
        "(repeatable; ESQ_PLUGINS does the same, comma-separated).",
    )(command)
    return debug_option(command)


def one_line(error: Exception) -> str:
    """What the CLI prints for ``error``: an ``EsqError``'s message, or a hint to use ``--debug``;
    notes added on the way (such as the run log's path) follow in parentheses."""
    if isinstance(error, EsqError):
        message = str(error)
    else:
        message = f"unexpected {type(error).__name__}: {error} (run again with --debug for the traceback)"
    notes = "; ".join(getattr(error, "__notes__", []))
    return f"{message} ({notes})" if notes else message


class EsqGroup(click.Group):
    """Core commands load lazily; plugins add theirs through ``esq_commands``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands_loaded = False

    def _load_plugin_commands(self) -> None:
        if not self._plugin_commands_loaded:
            self._plugin_commands_loaded = True
            use_plugins().add_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted({*CORE_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in CORE_COMMANDS:
            module, attribute = CORE_COMMANDS[name]
            return getattr(importlib.import_module(module), attribute)
        self._load_plugin_commands()
        return self.commands.get(name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if _debug_requested(ctx):
                raise
            raise click.ClickException(one_line(error)) from None


def make_cli() -> EsqGroup:
    """A fresh ``esq`` group (tests build one per case, since plugins add commands to it)."""

    @click.group(cls=EsqGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(core_version(), "-V", "--version", prog_name="esq", message="%(prog)s %(version)s")
    @debug_option
    def esq() -> None:
        """esq: measure what compressing a vision model's embeddings costs.

        Components (backbones, quantizers, metrics, degradations, retrievers) and pipelines
        come from plugins: `esq plugins` shows them, `esq list` lists the components, and
        `esq run PIPELINE` runs a pipeline.
        """

    return esq


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``esq`` script."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.WARNING)
    handler.addFilter(OnceFilter())
    logging.getLogger("esq").addHandler(handler)
    try:
        make_cli().main(args=argv, prog_name="esq")
    except Exception as error:
        # Raised outside a command (loading plugins' commands for `esq --help`).
        if "--debug" in (argv if argv is not None else sys.argv) or os.environ.get("ESQ_DEBUG", "") not in ("", "0"):
            raise
        click.echo(f"Error: {one_line(error)}", err=True)
        sys.exit(1)
