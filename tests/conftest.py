"""Shared fixtures: no ESQ_* variables from the caller's shell, and fake installed distributions."""

from __future__ import annotations

import importlib.metadata
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import esq.plugins


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test loads plugins with no ESQ_* variables from the caller's shell."""
    for variable in ("ESQ_PLUGINS", "ESQ_STRICT_PLUGINS", "ESQ_DEBUG"):
        monkeypatch.delenv(variable, raising=False)


def _is_core(entry_point: importlib.metadata.EntryPoint) -> bool:
    return entry_point.dist is not None and entry_point.dist.name == esq.plugins.CORE_DISTRIBUTION


def _under(entry_point: importlib.metadata.EntryPoint, folder: Path) -> bool:
    return entry_point.dist is not None and Path(entry_point.dist.locate_file("")) == folder


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``install_plugin(distribution, version, module, code)``: an installed distribution with
    an ``esq`` entry point, made of a module file and a ``.dist-info`` folder on ``sys.path``."""
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    # Only core's own built-ins and the distributions this test installs count, whatever else is installed.
    monkeypatch.setattr(
        esq.plugins,
        "installed_entry_points",
        lambda: sorted(
            (ep for ep in importlib.metadata.entry_points(group="esq") if _under(ep, site) or _is_core(ep)), key=str
        ),
    )

    def install(distribution: str, version: str, module: str, code: str, entry_point: str | None = None) -> str:
        (site / f"{module}.py").write_text(textwrap.dedent(code))
        info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[esq]\n{entry_point or distribution} = {module}\n")
        (info / "top_level.txt").write_text(f"{module}\n")
        return module

    return install
