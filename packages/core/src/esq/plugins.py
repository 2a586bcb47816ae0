"""Finding and loading plugins: built-in, entry points, ``--plugin`` and ``ESQ_PLUGINS``.

Installed plugins (entry-point group ``esq``) load one at a time; one that fails to import, or
breaks a rule of the plugin system, is reported in one warning line and skipped, so the others
still work (``ESQ_STRICT_PLUGINS=1`` makes that fatal). A plugin the user asks for by name
(``--plugin``, ``ESQ_PLUGINS``) must load: any failure is an error.

>>> plugins = load_plugins(["no:some-plugin"], environ={})
>>> [info.name for info in plugins.infos if info.source == "builtin"]
['esq']
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from esq import hookspecs
from esq.errors import PluginError
from esq.names import did_you_mean

ENTRY_POINT_GROUP = "esq"
CORE_DISTRIBUTION = "esq-core"
log = logging.getLogger("esq.plugins")


def known_hooks() -> list[str]:
    """Names of the hooks ``esq.hookspecs`` defines."""
    return sorted(name for name in vars(hookspecs) if name.startswith("esq_"))


@dataclass
class PluginInfo:
    """One plugin as ``esq plugins`` shows it."""

    name: str
    distribution: str
    version: str
    source: str
    status: str = "loaded"
    error: str = ""
    plugin: Any = field(default=None, repr=False)

    def hooks(self) -> list[str]:
        if self.plugin is None:
            return []
        return [name for name in known_hooks() if hasattr(self.plugin, name)]


class Plugins:
    """A loaded set of plugins: the pluggy manager and what ``esq plugins`` reports."""

    def __init__(self, manager: pluggy.PluginManager, infos: list[PluginInfo]) -> None:
        self.manager = manager
        self.infos = infos
        self._registries: dict[str, Any] = {}

    def loaded(self) -> list[PluginInfo]:
        return [info for info in self.infos if info.status == "loaded"]

    def registry(self, kind: str) -> Any:
        """The registry of ``kind``, built on first use (see ``esq.registry``)."""
        from esq.registry import Registry

        if kind not in self._registries:
            self._registries[kind] = Registry.build(kind, self.loaded())
        return self._registries[kind]


@cache
def core_version() -> str:
    try:
        return importlib.metadata.version(CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def _parse_requests(items: Iterable[str]) -> tuple[list[str], set[str]]:
    loads, blocked = [], set()
    for item in items:
        item = item.strip()
        if not item:
            continue
        if item.startswith("no:"):
            name = item[3:].strip()
            if _normalise(name) in ("esq", CORE_DISTRIBUTION):
                raise PluginError(f"--plugin {item}: esq's core cannot be blocked")
            blocked.add(_normalise(name))
        else:
            loads.append(item)
    return loads, blocked


def requested_plugins(cli_values: Sequence[str], environ: Mapping[str, str]) -> list[str]:
    """``ESQ_PLUGINS`` (comma-separated) followed by the ``--plugin`` values."""
    from_env = [part for part in environ.get("ESQ_PLUGINS", "").split(",") if part.strip()]
    return [*from_env, *cli_values]


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def _unknown_hooks(manager: pluggy.PluginManager, plugin: object) -> list[str]:
    known = set(known_hooks())
    return [name for name in dir(plugin) if name not in known and manager.parse_hookimpl_opts(plugin, name) is not None]


def _register(manager: pluggy.PluginManager, plugin: object, info: PluginInfo) -> None:
    """Register ``plugin``; raise ``PluginError`` naming it if it breaks a rule."""
    for name in _unknown_hooks(manager, plugin):
        raise PluginError(
            f"plugin {info.name!r} implements unknown hook {name!r}{did_you_mean(name, known_hooks())}; "
            f"esq's hooks are {', '.join(known_hooks())}"
        )
    try:
        manager.register(plugin, name=f"{info.source}:{info.name}")
    except (pluggy.PluginValidationError, ValueError) as error:
        raise PluginError(f"plugin {info.name!r}: {error}") from error


def _import_file(path: Path) -> ModuleType:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    module_name = f"esq_local_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"--plugin {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _distribution_of_module(module_name: str) -> tuple[str, str]:
    top = module_name.split(".")[0]
    names = importlib.metadata.packages_distributions().get(top, [])
    if names:
        return names[0], importlib.metadata.version(names[0])
    return "", ""


def _load_requested(item: str) -> tuple[object, PluginInfo]:
    is_file = item.endswith(".py") or os.sep in item or "/" in item
    try:
        if is_file:
            path = Path(item)
            if not path.is_file():
                raise PluginError(f"--plugin {item}: no such file")
            module = _import_file(path)
            info = PluginInfo(name=path.stem, distribution=str(path), version="", source="--plugin")
        else:
            module = importlib.import_module(item)
            distribution, version = _distribution_of_module(item)
            info = PluginInfo(name=item, distribution=distribution or item, version=version, source="--plugin")
    except PluginError:
        raise
    except ModuleNotFoundError as error:
        if error.name == item:
            raise PluginError(
                f"--plugin {item}: no module named {item!r}; give an importable module or a path to a .py file"
            ) from error
        raise PluginError(f"--plugin {item}: error importing plugin: {type(error).__name__}: {error}") from error
    except Exception as error:
        raise PluginError(f"--plugin {item}: error importing plugin: {type(error).__name__}: {error}") from error
    info.plugin = module
    return module, info


def installed_entry_points() -> list[importlib.metadata.EntryPoint]:
    """The entry points of group ``esq`` of every installed distribution, by name."""
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _strict(environ: Mapping[str, str]) -> bool:
    return environ.get("ESQ_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes")


def load_plugins(requested: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> Plugins:
    """Load core's built-in plugin, installed entry points and ``requested`` extras.

    ``requested`` holds ``--plugin`` values: a module name, a ``.py`` path, or ``no:NAME`` to
    block an installed plugin (by entry-point or distribution name). ``ESQ_PLUGINS`` in
    ``environ`` (default ``os.environ``) is read first, as a comma-separated list.
    """
    environ = os.environ if environ is None else environ
    loads, blocked = _parse_requests(requested_plugins(requested, environ))
    strict = _strict(environ)
    manager = _new_manager()
    infos: list[PluginInfo] = []

    from esq import pipelines

    core = PluginInfo(name="esq", distribution=CORE_DISTRIBUTION, version=core_version(), source="builtin")
    core.plugin = pipelines
    _register(manager, pipelines, core)
    infos.append(core)

    for entry_point in installed_entry_points():
        infos.append(_load_entry_point(manager, entry_point, blocked, strict))

    for item in loads:
        plugin, info = _load_requested(item)
        if manager.is_registered(plugin):
            continue
        _register(manager, plugin, info)
        infos.append(info)

    manager.check_pending()
    return Plugins(manager, infos)


def _load_entry_point(
    manager: pluggy.PluginManager,
    entry_point: importlib.metadata.EntryPoint,
    blocked: set[str],
    strict: bool,
) -> PluginInfo:
    dist = entry_point.dist
    info = PluginInfo(
        name=entry_point.name,
        distribution=dist.name if dist else entry_point.value,
        version=dist.version if dist else "",
        source="entry point",
    )
    if {_normalise(info.name), _normalise(info.distribution)} & blocked:
        info.status = "blocked"
        return info
    try:
        try:
            plugin = entry_point.load()
        except Exception as error:
            raise PluginError(
                f"plugin {info.name!r} ({info.distribution} {info.version}) failed to import: "
                f"{type(error).__name__}: {error}"
            ) from error
        info.plugin = plugin
        _register(manager, plugin, info)
    except PluginError as error:
        if strict:
            raise PluginError(f"{error} (ESQ_STRICT_PLUGINS is set)") from error
        info.status, info.error, info.plugin = "failed", str(error), None
        log.warning("esq: %s; skipped it (set ESQ_STRICT_PLUGINS=1 to make this an error)", error)
    return info


_current: Plugins | None = None
_current_key: tuple[str, ...] = ()


def use_plugins(requested: Sequence[str] = ()) -> Plugins:
    """Load plugins (as ``load_plugins``) and make them the ones ``esq.registry`` uses.

    Asking again for the same plugins, in the same environment, reuses the loaded set.
    """
    global _current, _current_key
    key = (*requested_plugins(requested, os.environ), os.environ.get("ESQ_STRICT_PLUGINS", ""))
    if _current is None or key != _current_key:
        _current, _current_key = load_plugins(requested), key
    return _current


def current_plugins() -> Plugins:
    """The plugins ``esq.registry`` uses: loaded from the environment on first use."""
    return _current if _current is not None else use_plugins()
