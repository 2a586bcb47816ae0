"""Finding and loading plugins: entry points (core's own built-ins among them), ``--plugin`` and
``ESQ_PLUGINS``.

Every plugin goes through pluggy: registered, checked for hooks esq does not define
(``check_pending``), then its component hooks are called once and what they return is checked.
An installed plugin (entry-point group ``esq``) that fails any of this is reported in one
warning line and skipped, so the others still work (``ESQ_STRICT_PLUGINS=1`` makes that fatal).
A plugin the user asks for (``--plugin``, ``ESQ_PLUGINS``) must load: any failure is an error.

>>> plugins = load_plugins(environ={})
>>> [(info.name, info.distribution) for info in plugins.infos if info.name == "esq"]
[('esq', 'esq-core')]
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from esq import hookspecs
from esq.errors import PluginError, RunInterrupted
from esq.names import did_you_mean
from esq.specs import KINDS, Spec

ENTRY_POINT_GROUP = "esq"
CORE_DISTRIBUTION = "esq-core"
log = logging.getLogger("esq.plugins")


def known_hooks() -> list[str]:
    """Names of the hooks ``esq.hookspecs`` defines."""
    return sorted(name for name in vars(hookspecs) if name.startswith("esq_"))


@dataclass
class PluginInfo:
    """One plugin as ``esq plugins`` shows it, with the specs its hooks returned."""

    name: str
    distribution: str
    version: str
    source: str
    status: str = "loaded"
    error: str = ""
    plugin: Any = field(default=None, repr=False)
    hooks: list[str] = field(default_factory=list)
    specs: dict[str, list[Spec]] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Request:
    """A plugin the user asked for: a module, a ``.py`` path, or ``no:NAME``; and where from."""

    value: str
    source: str  # "--plugin" or "ESQ_PLUGINS"

    def __str__(self) -> str:
        return f"{self.source} {self.value}" if self.source == "--plugin" else f"{self.source} entry {self.value!r}"


class Plugins:
    """A loaded set of plugins: the pluggy manager and what ``esq plugins`` reports."""

    def __init__(self, manager: pluggy.PluginManager, infos: list[PluginInfo], strict: bool) -> None:
        self.manager = manager
        self.infos = infos
        self.strict = strict
        self._registries: dict[str, Any] = {}

    def loaded(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.status == "loaded"]

    def info_of(self, plugin: object) -> PluginInfo:
        return next(info for info in self.infos if info.plugin is plugin)

    def registry(self, kind: str) -> Any:
        """The registry of ``kind``, built on first use (see ``esq.registries``)."""
        from esq.registries import Registry

        if kind not in self._registries:
            self._registries[kind] = Registry.build(kind, self.loaded())
        return self._registries[kind]

    def add_commands(self, cli: Any, reserved: Sequence[str]) -> None:
        """Let each plugin add its commands to ``cli``; taking a ``reserved`` name (one of the
        kernel's commands) or failing is handled as a failure at load."""
        for implementation in self.manager.hook.esq_commands.get_hookimpls():
            info = self.info_of(implementation.plugin)
            before = set(cli.commands)
            try:
                try:
                    with contextlib.redirect_stdout(sys.stderr):
                        implementation.function(cli=cli)
                except BaseException as error:
                    raise PluginError(
                        f"plugin {info.name!r} ({info.distribution}) failed in esq_commands(): {_fault(error)}"
                    ) from error
                clashes = sorted(set(cli.commands) - before & set(reserved))
                if clashes:
                    for name in clashes:
                        del cli.commands[name]
                    raise PluginError(f"plugin {info.name!r} adds command {clashes[0]!r}, which is esq's own")
            except PluginError as error:
                _fail(info, error, self.strict or info.source != "entry point")

    def describe(self) -> list[dict[str, str]]:
        """The loaded plugins as ``results.json`` records them."""
        return [
            {"name": info.name, "distribution": info.distribution, "version": info.version, "source": info.source}
            for info in self.loaded()
        ]


@cache
def core_version() -> str:
    try:
        return importlib.metadata.version(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def requested_plugins(cli_values: Sequence[str], environ: Mapping[str, str]) -> list[Request]:
    """``ESQ_PLUGINS`` (comma-separated) followed by the ``--plugin`` values."""
    from_env = [Request(part.strip(), "ESQ_PLUGINS") for part in environ.get("ESQ_PLUGINS", "").split(",")]
    from_cli = [Request(value.strip(), "--plugin") for value in cli_values]
    return [request for request in (*from_env, *from_cli) if request.value]


def _blocked(requests: Sequence[Request]) -> dict[str, Request]:
    blocked = {}
    for request in requests:
        if request.value.startswith("no:"):
            name = _normalise(request.value[3:].strip())
            if not name:
                raise PluginError(f"{request}: no:NAME needs the name of an installed plugin, for example no:esq-clip")
            blocked[name] = request
    return blocked


def new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _check_hook_names(manager: pluggy.PluginManager, plugin: object, info: PluginInfo) -> None:
    """pluggy's ``check_pending``, reworded: which hook is unknown, and which one was meant."""
    try:
        manager.check_pending()
    except pluggy.PluginValidationError:
        unknown = [caller.name for caller in manager.get_hookcallers(plugin) or [] if caller.spec is None]
        name = unknown[0] if unknown else "?"
        raise PluginError(
            f"plugin {info.name!r} implements unknown hook {name!r}{did_you_mean(name, known_hooks())}; "
            f"esq's hooks are {', '.join(known_hooks())}"
        ) from None


def _fault(error: BaseException) -> str:
    """What a plugin's code did instead of returning: ``sys.exit``, ``KeyboardInterrupt`` and
    any other exception are its failure; a real signal (``RunInterrupted``) goes on up."""
    if isinstance(error, RunInterrupted | GeneratorExit):
        raise error
    if isinstance(error, SystemExit):
        return f"called sys.exit({error.code!r})"
    return f"{type(error).__name__}: {error}"


def _collect_specs(manager: pluggy.PluginManager, plugin: object, info: PluginInfo) -> None:
    """Call each component hook ``plugin`` implements, once, and check what it returns."""
    for kind, (hook, spec_type) in KINDS.items():
        for implementation in getattr(manager.hook, hook).get_hookimpls():
            if implementation.plugin is not plugin:
                continue
            try:
                returned = list(implementation.function() or [])
            except BaseException as error:
                raise PluginError(
                    f"plugin {info.name!r} ({info.distribution}) failed in {hook}(): {_fault(error)}"
                ) from error
            for spec in returned:
                if not isinstance(spec, spec_type):
                    raise PluginError(
                        f"plugin {info.name!r} ({info.distribution}): {hook}() returned "
                        f"{type(spec).__name__}, expected {spec_type.__name__}"
                    )
            info.specs[kind] = [
                dataclasses.replace(spec, distribution=info.distribution, version=info.version) for spec in returned
            ]


def admit(manager: pluggy.PluginManager, plugin: object, info: PluginInfo) -> PluginInfo:
    """Register ``plugin`` and collect its specs; on any broken rule unregister it and raise
    ``PluginError`` naming it."""
    try:
        manager.register(plugin, name=f"{info.source}:{info.name}")
    except (pluggy.PluginValidationError, ValueError) as error:
        raise PluginError(f"plugin {info.name!r}: {error}") from error
    try:
        _check_hook_names(manager, plugin, info)
        _collect_specs(manager, plugin, info)
    except PluginError:
        manager.unregister(plugin)
        raise
    info.plugin = plugin
    info.hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])
    return info


def _import_file(path: Path) -> ModuleType:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    module_name = f"esq_local_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _distribution_of_module(module_name: str) -> tuple[str, str]:
    names = importlib.metadata.packages_distributions().get(module_name.split(".")[0], [])
    return (names[0], importlib.metadata.version(names[0])) if names else (module_name, "")


def _import_requested(request: Request) -> tuple[object, PluginInfo]:
    item = request.value
    is_file = item.endswith(".py") or os.sep in item or "/" in item
    try:
        if is_file:
            path = Path(item)
            if not path.is_file():
                raise PluginError(f"{request}: no such file")
            module = _import_file(path)
            info = PluginInfo(name=path.stem, distribution=str(path), version="", source=request.source)
        else:
            module = importlib.import_module(item)
            distribution, version = _distribution_of_module(item)
            info = PluginInfo(name=item, distribution=distribution, version=version, source=request.source)
    except PluginError:
        raise
    except ModuleNotFoundError as error:
        if error.name == item:
            raise PluginError(
                f"{request}: no module named {item!r}; give an importable module or a path to a .py file"
            ) from error
        raise PluginError(f"{request}: error importing plugin: {type(error).__name__}: {error}") from error
    except BaseException as error:
        raise PluginError(f"{request}: error importing plugin: {_fault(error)}") from error
    return module, info


def _strict(environ: Mapping[str, str]) -> bool:
    return environ.get("ESQ_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def _fail(info: PluginInfo, error: PluginError, fatal: bool) -> None:
    """A plugin broke a rule: fatal (strict mode, or asked for by the user) or a warning."""
    if fatal:
        suffix = " (ESQ_STRICT_PLUGINS is set)" if info.source == "entry point" else ""
        raise PluginError(f"{error}{suffix}") from error
    info.status, info.error, info.plugin = "failed", str(error), None
    info.specs.clear()
    log.warning("esq: %s; skipped it (set ESQ_STRICT_PLUGINS=1 to make this an error)", error)


def installed_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The entry points of group ``esq`` of every installed distribution, by name."""
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _entry_point_info(entry_point: importlib.metadata.EntryPoint) -> PluginInfo:
    dist = entry_point.dist
    return PluginInfo(
        name=entry_point.name,
        distribution=dist.name if dist else entry_point.value,
        version=dist.version if dist else "",
        source="entry point",
    )


def _load_entry_point(
    manager: pluggy.PluginManager, entry_point: importlib.metadata.EntryPoint, strict: bool
) -> PluginInfo:
    info = _entry_point_info(entry_point)
    try:
        try:
            plugin = entry_point.load()
        except BaseException as error:
            raise PluginError(
                f"plugin {info.name!r} ({info.distribution} {info.version}) failed to import: {_fault(error)}"
            ) from error
        admit(manager, plugin, info)
    except PluginError as error:
        _fail(info, error, strict)
    return info


def load_plugins(requested: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> Plugins:
    """Load the installed entry points (core's built-ins are esq-core's) and ``requested`` extras.

    ``requested`` holds ``--plugin`` values: a module name, a ``.py`` path, or ``no:NAME`` to
    block an installed plugin (by entry-point or distribution name). ``ESQ_PLUGINS`` in
    ``environ`` (default ``os.environ``) is read first, as a comma-separated list.
    """
    with contextlib.redirect_stdout(sys.stderr):  # what plugins print must not spoil stdout (--json)
        return _load(requested, os.environ if environ is None else environ)


def _load(requested: Sequence[str], environ: Mapping[str, str]) -> Plugins:
    requests = requested_plugins(requested, environ)
    blocked = _blocked(requests)
    strict = _strict(environ)
    manager = new_manager()
    infos: list[PluginInfo] = []
    matched: set[str] = set()
    for entry_point in installed_entry_points():
        info = _entry_point_info(entry_point)
        names = {_normalise(info.name), _normalise(info.distribution)} & blocked.keys()
        if names:
            matched |= names
            info.status = "blocked"
            infos.append(info)
        else:
            infos.append(_load_entry_point(manager, entry_point, strict))
    installed = [_normalise(name) for info in infos for name in (info.name, info.distribution)]
    for name in blocked.keys() - matched:
        log.warning(
            "esq: %s blocks nothing: no installed plugin is called %r%s",
            blocked[name],
            name,
            did_you_mean(name, installed),
        )

    for request in requests:
        if request.value.startswith("no:"):
            continue
        plugin, info = _import_requested(request)
        if manager.is_registered(plugin):
            continue
        infos.append(admit(manager, plugin, info))
    return Plugins(manager, infos, strict)


def plugin_key(requested: Sequence[str], environ: Mapping[str, str]) -> tuple[str, ...]:
    """What decides which plugins ``load_plugins(requested)`` loads in ``environ``."""
    return (*map(str, requested_plugins(requested, environ)), environ.get("ESQ_STRICT_PLUGINS", ""))
