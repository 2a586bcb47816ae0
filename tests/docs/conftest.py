"""The README blocks under test, counted in the session's summary (issue 16's measure)."""

from __future__ import annotations

from collections import Counter

import pytest

from readme_blocks import all_commands, python_blocks, synopsis_entries

KINDS = {
    "python: runs": "python blocks run",
    "python: xfail": "python blocks run up to what this machine lacks (weights, a checkpoint): that error, strictly",
    "python: skip": "python blocks a README marks not runnable here (reason shown as a skip)",
    "run": "esq commands run for real (read-only)",
    "expected": "esq commands run for real, output compared with the README",
    "check": "esq run commands: config built and the pipeline's check run, not the pipeline",
    "parse": "other esq commands: parsed by their click command, not invoked",
    "files": "pip install, make, pytest commands: not run, what they name exists (folders, extras, pins)",
    "other": "other shell commands: counted, not run",
    "synopsis": "esq commands of a synopsis (text) block: the command exists and takes each option shown",
}


def readme_block_counts() -> Counter[str]:
    """How many README blocks and commands are under test, by the way each is checked."""
    counts: Counter[str] = Counter(command.mode for command in all_commands())
    for block in python_blocks():
        kind = "python: skip" if block.skip_reason else "python: xfail" if block.expected_to_fail else "python: runs"
        counts[kind] += 1
    counts["synopsis"] = len(synopsis_entries())
    return counts


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = readme_block_counts()
    terminalreporter.section("README blocks under test")
    for kind, what in KINDS.items():
        terminalreporter.write_line(f"{counts[kind]:4d}  {what}")
    under_test = sum(count for kind, count in counts.items() if kind not in ("other", "python: skip"))
    terminalreporter.write_line(f"{under_test:4d}  in all under test")
