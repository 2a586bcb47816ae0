"""Meta-tests (as datasette's): every hook is tested and documented with its signature."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from esq import hookspecs
from esq.plugins import known_hooks

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()


def _signature(hook: str) -> str:
    text = str(inspect.signature(getattr(hookspecs, hook))).replace("'", "")
    return f"{hook}{text}"


@pytest.mark.parametrize("hook", known_hooks())
def test_hook_signature_is_in_the_readme(hook):
    assert _signature(hook) in README, f"README's hook table lacks `{_signature(hook)}`"


@pytest.mark.parametrize("hook", known_hooks())
def test_hook_is_implemented_by_a_tested_plugin(hook):
    implementations = re.compile(rf"@hookimpl\s+def {hook}\(|def {hook}\(.*\):\\n")
    sources = [p.read_text() for p in (ROOT / "tests").rglob("*.py") if p.name != Path(__file__).name]
    assert any(implementations.search(source) for source in sources), f"no test plugin implements {hook}"


@pytest.mark.parametrize("hook", known_hooks())
def test_hook_has_a_runnable_example(hook):
    assert ">>> " in (getattr(hookspecs, hook).__doc__ or ""), f"{hook}'s docstring has no example"
