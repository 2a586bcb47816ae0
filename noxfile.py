"""The test matrix. `make test` (or `.venv/bin/nox`) runs every session below, and each test once:
`tests(<package>)` runs `tests/<package>` with only that package (and core) installed; `all`, with
everything installed, runs `tests/integration` and every package's doctests; `lint` runs ruff, the
import-linter contracts (root pyproject.toml) and the import-cycle count.

Sessions share one torch installation (scripts/torch-env.sh) through a .pth file, and reuse
their virtualenvs: a session reinstalls only when a pyproject.toml it uses has changed.
New packages under packages/ join the matrix without edits here.
"""

from __future__ import annotations

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
nox.options.sessions = ["lint", "tests", "example", "demo", "all"]


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


DOCS_TOOLS = (TOOLS["pytest"], TOOLS["pytest-codeblocks"])


@nox.session(name="all", python=PYTHON)
def all_packages(session: nox.Session) -> None:
    """Every package installed together: the integration tests, every package's doctests and the
    READMEs' code blocks (tests/docs; the demo's block runs in the demo session), the per-package
    tests having run in their own sessions."""
    prepare(session, *map(package_path, PACKAGES), tools=DOCS_TOOLS)
    sources = [f"packages/{name}/src" for name in PACKAGES]
    session.run(
        "pytest",
        "tests/integration",
        "tests/docs",
        "-m",
        "not readme_demo",
        "--doctest-modules",
        *sources,
        *session.posargs,
    )


@nox.session(python=PYTHON)
def example(session: nox.Session) -> None:
    """The third-party example plugin: its own tests, and it shows up in esq list and runs in the
    demo (which trains on esq-backbones' tiny CNN)."""
    prepare(session, package_path("core"), package_path("plugins-backbones"), EXAMPLE)
    session.run("pytest", f"{EXAMPLE}/tests", "--doctest-modules", f"{EXAMPLE}/src", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """What `make demo` runs, in a clean environment with every package installed: the README's
    `esq run demo` block, run by tests/docs and its output compared with the README's table."""
    prepare(session, *map(package_path, PACKAGES), tools=DOCS_TOOLS)
    session.run("pytest", "tests/docs", "-m", "readme_demo", *session.posargs)


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
