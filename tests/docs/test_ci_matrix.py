"""CI runs every test folder: the default nox sessions (what `make test` and .ci/run run) cover each
folder under tests/ and the example's tests, so making CI faster dropped none."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
nox = pytest.importorskip("nox")


def _noxfile():
    spec = importlib.util.spec_from_file_location("esq_noxfile", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_test_folder_runs_in_a_default_nox_session() -> None:
    noxfile = _noxfile()
    default = set(nox.options.sessions)
    sources = {
        "tests": inspect.getsource(noxfile.tests),
        "all": inspect.getsource(noxfile.all_packages),
        "example": inspect.getsource(noxfile.example),
    }
    assert set(sources) <= default
    folders = {path.name for path in (ROOT / "tests").iterdir() if path.is_dir() and any(path.glob("test_*.py"))}
    # tests(package) runs tests/<package> for every package folder; `all` names the others.
    covered = set(noxfile.PACKAGES) | {name for name in folders if f'"tests/{name}"' in sources["all"]}
    assert 'f"tests/{package}"' in sources["tests"]
    assert folders <= covered, f"no default session runs {sorted(folders - covered)}"
    assert "{EXAMPLE}/tests" in sources["example"]
