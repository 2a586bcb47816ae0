"""Memory figures for the benchmarks (Linux): the current and peak RSS of this process,
resetting the peak so that it measures one step, and the peak of live torch tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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


def tensor_growth(run: Callable[[], Any]) -> int:
    """Peak bytes of live tensors during ``run`` over those live before it, in KiB, from the
    profiler's memory timeline (a private torch API: -1 where it is missing or fails)."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        with profile(
            activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
        ) as profiler:
            run()
        _, sizes = MemoryProfileTimeline(profiler._memory_profile())._coalesce_timeline(torch.device("cpu"))
        totals = [sum(by_category) for by_category in sizes]
        return (max(totals) - totals[0]) // 1024
    except Exception:  # an optional second opinion on the RSS figures, never fatal
        return -1
