"""``esq run PIPELINE``: build the pipeline's config from a TOML file, ``--set`` and options,
run it in a new run directory and print its results."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import click

from esq.cli.pipeline_options import option_layers, option_names
from esq.commands import context_plugins, plugin_options
from esq.config import build_config, config_layers, config_text
from esq.console import stderr
from esq.errors import EsqError
from esq.output import format_cell, format_options, print_rows
from esq.plugins import Plugins
from esq.runner import run_pipeline

PARTIAL_EXIT_CODE = 3  # the run finished, but some result rows failed
VALUE_OPTIONS = {"--config", "--set", "--output-dir", "--seed", "--plugin", "--format"}


def _peek(args: list[str]) -> tuple[str | None, list[str]]:
    """The pipeline name and ``--plugin`` values in raw arguments (for ``--help``)."""
    pipeline, plugin_values, index = None, [], 0
    while index < len(args):
        argument = args[index]
        option, equals, inline = argument.partition("=")
        if option in VALUE_OPTIONS and not equals:
            if option == "--plugin" and index + 1 < len(args):
                plugin_values.append(args[index + 1])
            index += 2
            continue
        if option == "--plugin":
            plugin_values.append(inline)
        elif not argument.startswith("-") and pipeline is None:
            pipeline = argument
        index += 1
    return pipeline, plugin_values


def _shown(value: Any) -> str:
    return repr(value) if value is None or isinstance(value, str) else format_cell(value) or repr(value)


def _field_rows(config_type: type) -> list[tuple[str, str]]:
    hints = typing.get_type_hints(config_type)
    spellings = option_names(config_type)
    rows = []
    for field in dataclasses.fields(config_type):
        if field.default is not dataclasses.MISSING:
            default = _shown(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            default = _shown(field.default_factory())
        else:
            default = "(required)"
        annotation = hints[field.name]
        kind = annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")
        help_text = field.metadata.get("help", "")
        rows.append((", ".join(spellings.get(field.name, [field.name])), f"{kind} = {default}  {help_text}".rstrip()))
    return rows


class RunCommand(click.Command):
    """``--help`` lists the installed pipelines, and a named pipeline's options."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["esq.run.peek"] = _peek(args)
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        pipeline, plugin_values = ctx.meta.get("esq.run.peek", (None, []))
        try:
            pipelines = context_plugins(ctx, tuple(plugin_values)).registry("pipelines")
            with formatter.section("Pipelines"):
                formatter.write_dl([(spec.name, spec.summary) for spec in pipelines.specs()])
            if pipeline is not None:
                spec = pipelines.spec(pipeline)
                title = f"Options of pipeline {pipeline!r} (after its name; as --set or TOML keys: some_option=VALUE)"
                with formatter.section(title):
                    formatter.write_dl(_field_rows(spec.config))
        except EsqError as error:
            formatter.write_paragraph()
            formatter.write_text(f"({error})")


@click.command(
    "run",
    cls=RunCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("pipeline")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file with the pipeline's options.",
)
@click.option(
    "--set",
    "set_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set one option (repeatable; dotted keys for tables; values in TOML syntax).",
)
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("runs"),
    show_default=True,
    help="Runs go to OUTPUT_DIR/PIPELINE/TIMESTAMP-NAME/.",
)
@click.option("--seed", type=int, help="Seed for every random generator (the config's `seed`).")
@click.option(
    "--check",
    is_flag=True,
    help="Check the options against the installed components and print the resolved config as TOML "
    "(a file for --config); run nothing, write nothing.",
)
@format_options
@plugin_options
@click.pass_context
def run(
    ctx: click.Context,
    pipeline: str,
    config_file: Path | None,
    set_options: tuple[str, ...],
    output_dir: Path,
    seed: int | None,
    check: bool,
    output_format: str,
    plugins: Plugins,
) -> None:
    """Run PIPELINE and write its run directory; the pipelines are listed below, and
    ``esq run PIPELINE --help`` lists its own options (``--KEY VALUE`` after its name)."""
    spec = plugins.registry("pipelines").spec(pipeline)
    layers = config_layers(config_file, set_options, seed) + option_layers(spec.config, ctx.args, pipeline)
    config = build_config(spec.config, layers, pipeline)
    if check:
        spec.check_config(config, plugins)
        click.echo(
            config_text(config, f"esq run {pipeline}: resolved config ({spec.distribution} {spec.version})"), nl=False
        )
        stderr.print(f"esq run {pipeline}: the options are valid; nothing was run", highlight=False)
        return
    finished = run_pipeline(spec, config, output_dir, plugins)
    if finished.worker:
        return
    shown = finished.results.table if finished.results.table is not None else finished.results.rows
    print_rows(
        f"esq run {pipeline}", finished.results.rows if output_format in ("json", "csv") else shown, output_format
    )
    stderr.print(f"run directory: {finished.directory}", highlight=False)
    if failed := finished.results.failed_rows:
        stderr.print(
            f"{len(failed)} of {len(finished.results.rows)} result rows failed (their `error` column says why)",
            highlight=False,
        )
        ctx.exit(PARTIAL_EXIT_CODE)
