"""Resident-set figures for the benchmarks (Linux): the current and peak RSS of this process,
and resetting the peak so that it measures one step."""

from __future__ import annotations


def status_kib(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise SystemExit(f"/proc/self/status has no {field}; the memory measure needs Linux")


def reset_peak() -> bool:
    """Set ``VmHWM`` back to the current resident set (Linux ≥ 4.0); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True
