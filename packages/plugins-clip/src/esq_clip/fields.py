"""What Chinese-CLIP's files share: decimal integer ids, and values quoted in error messages."""

from __future__ import annotations

import re
from typing import Any

INTEGER = re.compile(rb"0|-?[1-9][0-9]*")  # a decimal id as cn-clip writes it: no sign, spaces or leading zeros


def is_integer(value: Any) -> bool:
    """An ``int`` that is not a ``bool``, as JSON ids are.

    >>> is_integer(3), is_integer(True), is_integer(3.0)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)``, cut to ``limit`` characters for a one-line message.

    >>> shown("x" * 50, limit=5)
    "'xxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}..."
