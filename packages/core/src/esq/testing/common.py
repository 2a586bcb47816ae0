"""Helpers shared by the conformance checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from esq.errors import EsqError
from esq.specs import ComponentSpec


def ensure(condition: bool, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` (kept under ``python -O``)."""
    if not condition:
        raise AssertionError(message)


def build(spec: ComponentSpec, options: dict[str, Any]) -> Any:
    component = spec.factory(**options)
    ensure(
        isinstance(getattr(component, "options", None), dict),
        (f"{spec.name}: the component must expose `options`, a dict of the options it was built with"),
    )
    return component


def rebuild(spec: ComponentSpec, component: Any) -> Any:
    """The component built again from its own ``options`` (the round trip every check makes)."""
    try:
        return spec.factory(**component.options)
    except TypeError as error:
        raise AssertionError(f"{spec.name}: factory(**component.options) failed: {error}") from error


def expect_rejected(name: str, what: str, call: Callable[[], Any], errors: tuple[type, ...] = (EsqError,)) -> None:
    """``call()`` must raise one of ``errors`` (esq's own by default: one clear line in the CLI)."""
    try:
        call()
    except errors:
        return
    except Exception as error:
        expected = " or ".join(e.__name__ for e in errors)
        raise AssertionError(f"{name}: {what} raised {type(error).__name__} ({error}); expected {expected}") from error
    raise AssertionError(f"{name}: {what} was accepted; it must raise an error that says what is wrong")
