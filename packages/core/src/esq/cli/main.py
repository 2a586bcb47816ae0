"""The ``esq`` group: lazy core subcommands, plugins' commands, and one-line errors.

Core subcommands are imported only when used, and nothing here imports torch, so ``esq --help``,
``esq plugins`` and ``esq list`` start fast.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from esq.commands import context_plugins, debug_option, debug_requested
from esq.console import OnceFilter
from esq.errors import RunInterrupted, error_line
from esq.plugins import core_version
from esq.runner import interruptible

CORE_COMMANDS = {
    "list": ("esq.cli.list_command", "list_components"),
    "plugins": ("esq.cli.plugins_command", "plugins"),
    "run": ("esq.cli.run_command", "run"),
}


class EsqGroup(click.Group):
    """Core commands load lazily; plugins add theirs through ``esq_commands``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands_loaded = False

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        if not self._plugin_commands_loaded:
            self._plugin_commands_loaded = True
            context_plugins(ctx).add_commands(self, reserved=CORE_COMMANDS)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands(ctx)
        return sorted({*CORE_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in CORE_COMMANDS:
            module, attribute = CORE_COMMANDS[name]
            return getattr(importlib.import_module(module), attribute)
        self._load_plugin_commands(ctx)
        return self.commands.get(name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if debug_requested(ctx):
                raise
            raise click.ClickException(error_line(error)) from None


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
        with interruptible():
            make_cli().main(args=argv, prog_name="esq")
    except RunInterrupted as interruption:
        click.echo(f"Error: {error_line(interruption)}", err=True)
        sys.exit(interruption.exit_code)
    except Exception as error:
        # Raised outside a command (loading plugins' commands for `esq --help`).
        if "--debug" in (argv if argv is not None else sys.argv) or os.environ.get("ESQ_DEBUG", "") not in ("", "0"):
            raise
        click.echo(f"Error: {error_line(error)}", err=True)
        sys.exit(1)
