"""The two consoles: results go to stdout, diagnostics (warnings, progress, logs) to stderr.

rich honours ``NO_COLOR``, and writes plain text when the stream is not a terminal.
"""

from __future__ import annotations

from rich.console import Console

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)
