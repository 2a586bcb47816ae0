"""The test matrix. `make test` (.ci/run: two sessions at a time) or `.venv/bin/nox` (one at a time) runs every
session below, and each test once:
`tests(<package>)` runs `tests/<package>` with only that package (and core) installed; `all`, with
everything installed, runs `tests/integration` and every package's doctests; `lint` runs ruff, the
import-linter contracts (root pyproject.toml) and the import-cycle count.

Sessions share one torch installation (scripts/torch-env.sh) through a .pth file, and reuse
their virtualenvs: a session reinstalls only when a pyproject.toml it uses has changed. `all` and
`demo`, which need every package, run in the repository's .venv (scripts/dev-env.sh), which
`make test` has installed anyway.
New packages under packages/ join the matrix without edits here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import sysconfig
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
EXAMPLE = "examples/esq-plugin-example"
PYTHON = "3.11"
TOOLS = {
    line.split("==")[0]: line.strip()
    for line in (ROOT / "tools.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}

nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
# `demo` is not among them: `all` runs the README's demo block with the other README blocks, in the
# same environment, so the demo runs once; `nox -s demo` runs that block alone.
nox.options.sessions = ["lint", "tests", "example", "all"]


def _site_packages(session: nox.Session) -> Path:
    location = Path(session.virtualenv.location)
    relative = Path(sysconfig.get_path("purelib")).relative_to(sysconfig.get_path("data"))
    return location / relative


def prepare(session: nox.Session, *projects: str, tools: tuple[str, ...] = (TOOLS["pytest"],)) -> None:
    """Link the shared torch, then install ``projects`` (editable) and ``tools`` unless the
    session already has exactly these, from unchanged pyproject files."""
    torch_site = subprocess.run([str(ROOT / "scripts/torch-env.sh")], check=True, capture_output=True, text=True)
    site = _site_packages(session)
    (site / "_esq_shared_torch.pth").write_text(torch_site.stdout.strip() + "\n")
    digest = hashlib.sha256(json.dumps([projects, tools]).encode())
    for project in projects:
        digest.update((ROOT / project.partition("[")[0] / "pyproject.toml").read_bytes())
    stamp = Path(session.virtualenv.location) / ".esq-installed"
    if stamp.is_file() and stamp.read_text() == digest.hexdigest():
        session.log("installed packages are up to date")
        return
    arguments = [argument for project in projects for argument in ("-e", project)]
    # .ci/run runs two sessions at once: their editable installs would write the same packages'
    # egg-info folders at the same time, so installs take turns (the tests still overlap).
    with (Path(session.virtualenv.location).parent / ".esq-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        session.install("--disable-pip-version-check", *arguments, *tools)
    stamp.write_text(digest.hexdigest())


def package_path(name: str) -> str:
    """The package's folder with all its extras: tests cover the optional backbones too."""
    pyproject = tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())
    extras = sorted(pyproject["project"].get("optional-dependencies", {}))
    return f"packages/{name}" + (f"[{','.join(extras)}]" if extras else "")


@nox.session(python=PYTHON)
@nox.parametrize("package", PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package's tests with only that package (and core) installed."""
    projects = [package_path("core")] + ([package_path(package)] if package != "core" else [])
    prepare(session, *projects)
    session.run("pytest", f"tests/{package}", *session.posargs)


def dev_env(session: nox.Session) -> Path:
    """The repository's .venv (scripts/dev-env.sh: every package with its extras and tools.txt, what
    `make demo` uses), brought up to date; returns its bin folder. `all` and `demo` need exactly
    that environment, so they run in it instead of installing every package a second time."""
    session.run(str(ROOT / "scripts/dev-env.sh"), external=True)
    return ROOT / ".venv" / "bin"


@nox.session(name="all", venv_backend="none")
def all_packages(session: nox.Session) -> None:
    """Every package installed together (in .venv): the integration tests, every package's doctests
    and the READMEs' code blocks (tests/docs, the demo's block among them: what `make demo` runs),
    the per-package tests having run in their own sessions."""
    bin_folder = dev_env(session)
    sources = [f"packages/{name}/src" for name in PACKAGES]
    pytest = str(bin_folder / "pytest")
    session.run(
        pytest, "tests/integration", "tests/docs", "--doctest-modules", *sources, *session.posargs, external=True
    )


@nox.session(python=PYTHON)
def example(session: nox.Session) -> None:
    """The third-party example plugin: its own tests, and it shows up in esq list and runs in the
    demo (which trains on esq-backbones' tiny CNN)."""
    prepare(session, package_path("core"), package_path("plugins-backbones"), EXAMPLE)
    session.run("pytest", f"{EXAMPLE}/tests", "--doctest-modules", f"{EXAMPLE}/src", *session.posargs)


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """What `make demo` runs, alone, in .venv: the README's `esq run demo` block, its output
    compared with the README's table (`all` runs it too, so this session is not a default one)."""
    pytest = str(dev_env(session) / "pytest")
    session.run(pytest, "tests/docs", "-m", "readme_demo", *session.posargs, external=True)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and formatting), the layer contracts of DESIGN.md (import-linter reads the sources,
    so nothing needs installing) and the number of import cycles, which must be 0."""
    prepare(session, tools=(TOOLS["ruff"], TOOLS["import-linter"]))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    sources = ":".join(str(ROOT / path) for path in [*(f"packages/{name}/src" for name in PACKAGES), f"{EXAMPLE}/src"])
    session.run("lint-imports", "--no-cache", env={"PYTHONPATH": sources})
    session.run("python", "scripts/import_cycles.py", "--check", env={"PYTHONPATH": sources})
