"""Start-up time: `esq list` against `python -c "import torch"`, in one run, median of N.

Goal (issue 2): `esq list` under 0.5x the torch import, since it must not import torch.
Run with the environment that has esq installed: `.venv/bin/python benchmarks/startup.py`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "esq list": [sys.executable, "-m", "esq", "list"],
    "import torch": [sys.executable, "-c", "import torch"],
}


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    repeats = parser.parse_args().repeats
    for command in COMMANDS.values():
        wall_time(command)  # warm the file cache once, untimed
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:>14}: median {medians[name]:.3f} s  ({', '.join(f'{v:.3f}' for v in values)})")
    ratio = medians["esq list"] / medians["import torch"]
    print(f"ratio esq list / import torch: {ratio:.2f}x (goal < 0.5x)")


if __name__ == "__main__":
    main()
