"""`esq --help`, `esq plugins` and `esq list` must not import torch (start-up time)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from esq.cli.main import make_cli
try:
    make_cli().main(args={args!r}, prog_name="esq", standalone_mode=False)
finally:
    print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED", file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["list"], ["list", "--json"], ["run", "--help"]])
def test_command_does_not_import_torch(args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "TORCH_NOT_IMPORTED" in result.stderr, result.stderr
