"""``lazy("package.module:Name")``: a factory that imports its target only when called.

Plugins name their component classes this way so that loading the plugin (``esq list``) does not
import torch, while ``create`` still sees the class's real signature and checks options against it.

>>> factory = lazy("textwrap:indent")
>>> factory("text", "> ")
'> text'
>>> str(inspect.signature(factory))
'(text, prefix, predicate=None)'
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any


class lazy:
    """A callable standing for ``module:attribute``, imported on first use."""

    def __init__(self, target: str) -> None:
        module, _, attribute = target.partition(":")
        if not module or not attribute:
            raise ValueError(f"lazy target {target!r} must look like 'package.module:Name'")
        self.target = target
        self._module, self._attribute = module, attribute

    def resolve(self) -> Any:
        return getattr(importlib.import_module(self._module), self._attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(self.resolve())

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"
