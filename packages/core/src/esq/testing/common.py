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


def protocol_members(protocol: type) -> list[str]:
    """The attributes and methods a component protocol of ``esq.components`` promises."""
    methods = [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]
    return [
        *getattr(protocol, "__annotations__", {}),
        *methods,
        *(["__call__"] if "__call__" in vars(protocol) else []),
    ]


def build(spec: ComponentSpec, options: dict[str, Any], protocol: type) -> Any:
    """The component, after checking it has every member of its ``protocol``."""
    component = spec.factory(**options)
    missing = [name for name in protocol_members(protocol) if not hasattr(component, name)]
    ensure(not missing, f"{spec.name}: the component lacks {', '.join(missing)} ({protocol.__name__} protocol)")
    ensure(
        isinstance(component.options, dict),
        f"{spec.name}: the component must expose `options`, a dict of the options it was built with",
    )
    return component


def rebuild(spec: ComponentSpec, component: Any, protocol: type) -> Any:
    """The component built again from its own ``options`` (the round trip every check makes)."""
    try:
        return build(spec, component.options, protocol)
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
