"""``options``: a component's constructor arguments, read back from the instance.

As scikit-learn's ``get_params``: every parameter of ``__init__`` is stored under its own name,
so the options that built a component rebuild it (``type(c)(**c.options)``), and no class writes
the list out by hand.

>>> class Blur(WithOptions):
...     def __init__(self, sigma: float = 1.0, truncate: float = 4.0) -> None:
...         self.sigma, self.truncate = sigma, truncate
>>> Blur(sigma=2.0).options
{'sigma': 2.0, 'truncate': 4.0}
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar


def option_names(cls: type, exclude: tuple[str, ...] = ()) -> list[str]:
    """The named parameters of ``cls``'s constructor, less ``exclude``."""
    parameters = inspect.signature(cls).parameters.values()
    named = (p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return [name for name in named if name not in exclude]


def options_of(component: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{parameter: component.parameter}`` for each constructor parameter of ``component``."""
    return {name: getattr(component, name) for name in option_names(type(component), exclude)}


class WithOptions:
    """Gives a class the ``options`` property from its ``__init__`` signature.

    ``options_excluded`` names constructor parameters that are not options (a quantizer's
    ``input_dim``, which the pipeline fills in).
    """

    options_excluded: ClassVar[tuple[str, ...]] = ()

    @property
    def options(self) -> dict[str, Any]:
        return options_of(self, self.options_excluded)
