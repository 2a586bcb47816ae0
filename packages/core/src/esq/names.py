"""Suggestions for misspelt names, shared by every "unknown ..." error."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest choices, or ``""``.

    >>> did_you_mean("cak", ["cka", "rsa"])
    " (did you mean 'cka'?)"
    """
    close = difflib.get_close_matches(name, list(choices), n=2)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
