"""Distribution metrics: esq's FID against pytorch-fid and torchmetrics; CMMD's memory and time.

Issue "plugins-metrics (distribution)", Measure.

FID, N = 10,000 per sample, d = 2048 (``--fid-rows``, ``--fid-dim``): two float64 feature sets with
structure (non-negative, a 128-d latent mapped up plus noise, unequal feature scales; the second
set's latent shifted and widened). Two comparisons, each side timed on the same arrays:

- from features, the whole computation: ``esq_metrics.fid(a, b)``; pytorch-fid's statistics
  (``np.mean``, ``np.cov``, as its ``calculate_activation_statistics``) then its
  ``calculate_frechet_distance`` (``scipy.linalg.sqrtm``); torchmetrics' ``FrechetInceptionDistance``
  with an identity feature extractor (``update`` with each set as float64 features, ``compute``:
  float64 sums, then ``eigvals`` of Σa·Σb);
- from statistics, the distance alone, all three given the same means and ``np.cov`` covariances:
  esq's ``frechet_distance``, pytorch-fid's ``calculate_frechet_distance``, torchmetrics'
  ``_compute_fid``.

The sides rotate their order within each repeat after one untimed warm-up; medians are reported.
Goals: ≥ 4× faster than pytorch-fid and the same value to 1e-8 relative; not slower than
torchmetrics.

CMMD, N = M = 30,000 float32 embeddings, d = 768 (``--cmmd-rows``, ``--cmmd-dim``): first a check
that the blocked computation equals the whole-matrix formula on 2,000 rows, then one run in a fresh
process measuring the time and the peak extra memory: the growth of the resident set during the
call (``VmHWM`` after it minus ``VmRSS`` before it, the peak reset through ``/proc/self/clear_refs``,
Linux) and the peak of NumPy's allocations under ``tracemalloc``. Goal: ≤ 2 GiB extra. The
reference code would hold N×N float32 kernel matrices (3.4 GiB each at N = 30,000).

On this 2-core machine the full sizes take about 3 minutes; for a quicker run:
``--fid-rows 4000 --fid-dim 1024 --cmmd-rows 10000``.

    .venv/bin/python benchmarks/distribution_metrics.py [--repeats 3] [--fid-rows 10000] [--fid-dim 2048]
        [--cmmd-rows 30000] [--cmmd-dim 768] [--threads 2]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import torch
from memory import reset_peak, status_kib
from pytorch_fid.fid_score import calculate_frechet_distance
from torchmetrics.image.fid import FrechetInceptionDistance, _compute_fid

import esq_metrics
from esq_metrics.fid import frechet_distance

LATENT = 128
SPEED_GOAL_PYTORCH_FID, SPEED_GOAL_TORCHMETRICS, VALUE_GOAL, MEMORY_GOAL_GIB = 4.0, 1.0, 1e-8, 2.0


def fid_features(rows: int, dim: int, seed: int, shift: float) -> np.ndarray:
    """Non-negative features of rank-``LATENT`` structure plus noise, unequal scales per feature."""
    shared = np.random.default_rng(12345)
    basis, scales = shared.normal(size=(LATENT, dim)) / np.sqrt(LATENT), np.exp(shared.normal(0.0, 0.5, dim))
    generator = np.random.default_rng(seed)
    latent = generator.normal(size=(rows, LATENT)) * (1.0 + shift) + shift
    return np.maximum(latent @ basis + 0.5 * generator.normal(size=(rows, dim)), 0.0) * scales


def embeddings(rows: int, dim: int, seed: int, shift: float) -> np.ndarray:
    generator = np.random.default_rng(seed)
    return (generator.normal(size=(rows, dim)) + shift).astype(np.float32)


class Features(torch.nn.Identity):
    """torchmetrics' FID with the features themselves in place of Inception."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features


def torchmetrics_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=Features(a.shape[1]))
    metric.update(a, real=True)
    metric.update(b, real=False)
    return float(metric.compute())


def pytorch_fid_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.mean(x, axis=0), np.cov(x, rowvar=False)


def time_sides(sides: dict[str, Callable[[], float]], repeats: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds and the value of each side; the order rotates from repeat to repeat."""
    values = {name: run() for name, run in sides.items()}  # warm-up, untimed
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            started = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}, values


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def fid_report(rows: int, dim: int, repeats: int) -> None:
    a, b = fid_features(rows, dim, seed=0, shift=0.0), fid_features(rows, dim, seed=1, shift=0.15)
    a_torch, b_torch = torch.from_numpy(a), torch.from_numpy(b)
    statistics_a, statistics_b = pytorch_fid_statistics(a), pytorch_fid_statistics(b)
    torch_statistics = [torch.from_numpy(array) for array in (*statistics_a, *statistics_b)]
    comparisons = {
        "from features": {
            "esq": lambda: esq_metrics.fid(a, b),
            "pytorch-fid": lambda: float(
                calculate_frechet_distance(*pytorch_fid_statistics(a), *pytorch_fid_statistics(b))
            ),
            "torchmetrics": lambda: torchmetrics_fid(a_torch, b_torch),
        },
        "from statistics": {
            "esq": lambda: frechet_distance(*statistics_a, *statistics_b).value,
            "pytorch-fid": lambda: float(calculate_frechet_distance(*statistics_a, *statistics_b)),
            "torchmetrics": lambda: float(
                _compute_fid(torch_statistics[0], torch_statistics[1], torch_statistics[2], torch_statistics[3])
            ),
        },
    }
    print(f"FID: N = {rows} per sample, d = {dim}, float64 features, {repeats} repeats (medians)")
    print(f"{'computation':<17}{'side':<14}{'seconds':>9}{'side/esq':>10}{'value':>22}{'rel. diff':>11}")
    verdicts = []
    for computation, sides in comparisons.items():
        seconds, values = time_sides(sides, repeats)
        for name in sides:
            difference = abs(values[name] - values["esq"]) / abs(values["esq"])
            ratio = "" if name == "esq" else f"{seconds[name] / seconds['esq']:.2f}x"
            print(
                f"{computation:<17}{name:<14}{seconds[name]:>9.3f}{ratio:>10}{values[name]:>22.12f}"
                f"{'' if name == 'esq' else f'{difference:.1e}':>11}"
            )
        speed_up = seconds["pytorch-fid"] / seconds["esq"]
        versus_torchmetrics = seconds["torchmetrics"] / seconds["esq"]
        difference = abs(values["pytorch-fid"] - values["esq"]) / abs(values["esq"])
        verdicts.append(
            f"  {computation}: pytorch-fid takes {speed_up:.2f}x esq's time "
            f"({verdict(speed_up >= SPEED_GOAL_PYTORCH_FID)}), value within {difference:.1e} "
            f"({verdict(difference <= VALUE_GOAL)}); torchmetrics takes {versus_torchmetrics:.2f}x "
            f"({verdict(versus_torchmetrics >= SPEED_GOAL_TORCHMETRICS)})"
        )
    print(
        f"goals: ≥ {SPEED_GOAL_PYTORCH_FID:.0f}x faster than pytorch-fid, same value to {VALUE_GOAL:.0e} "
        "relative; not slower than torchmetrics"
    )
    print("\n".join(verdicts))


def cmmd_in_this_process(rows: int, dim: int) -> dict[str, float]:
    """One CMMD call on fresh inputs: seconds, resident-set growth and NumPy's traced peak (bytes)."""
    a, b = embeddings(rows, dim, seed=0, shift=0.0), embeddings(rows, dim, seed=1, shift=0.02)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    tracemalloc.start()  # a few large allocations per block: no measurable slow-down
    if not reset_peak():
        raise SystemExit("cannot reset the peak resident set through /proc/self/clear_refs")
    before = status_kib("VmRSS")
    started = time.perf_counter()
    value = esq_metrics.cmmd(a, b)
    seconds = time.perf_counter() - started
    growth = (status_kib("VmHWM") - before) * 1024
    traced = tracemalloc.get_traced_memory()[1]
    return {"value": value, "seconds": seconds, "growth": growth, "traced": traced}


def cmmd_check(dim: int, rows: int = 2000) -> float:
    """Relative difference between the blocked CMMD and the three whole kernel matrices."""
    a = embeddings(rows, dim, seed=0, shift=0.0).astype(np.float64)
    b = embeddings(rows, dim, seed=1, shift=0.02).astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)

    def kernel_mean(x: np.ndarray, y: np.ndarray) -> float:
        squared = -2 * x @ y.T + np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :]
        return float(np.exp(-squared / (2 * 10.0**2)).mean())

    whole = 1000 * (kernel_mean(a, a) + kernel_mean(b, b) - 2 * kernel_mean(a, b))
    return abs(esq_metrics.cmmd(a, b, block_size=300) - whole) / abs(whole)


def cmmd_report(rows: int, dim: int, threads: int) -> None:
    print(f"CMMD: N = M = {rows} float32 embeddings, d = {dim}, default options (block_size 1024, biased)")
    print(f"  check: blocked (300) vs whole matrices on 2000 rows: relative difference {cmmd_check(dim):.1e}")
    command = [sys.executable, os.path.abspath(__file__), "--cmmd-side", f"{rows}:{dim}", "--threads", str(threads)]
    result = json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    gib = 1024**3
    inputs = 2 * rows * dim * 4
    print(f"  value {result['value']:.6f}, {result['seconds']:.1f} s (one call, fresh process)")
    print(
        f"  peak extra resident memory {result['growth'] / gib:.3f} GiB (inputs {inputs / gib:.3f} GiB, "
        f"not counted); peak of the allocations tracemalloc traces (NumPy's): {result['traced'] / gib:.3f} GiB"
    )
    reference = 3 * rows * rows * 4
    print(f"  the reference code's three N×N float32 kernel matrices would take {reference / gib:.1f} GiB")
    print(
        f"goal: ≤ {MEMORY_GOAL_GIB:.0f} GiB extra: {result['growth'] / gib:.3f} GiB "
        f"({verdict(result['growth'] <= MEMORY_GOAL_GIB * gib)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fid-rows", type=int, default=10_000)
    parser.add_argument("--fid-dim", type=int, default=2048)
    parser.add_argument("--cmmd-rows", type=int, default=30_000)
    parser.add_argument("--cmmd-dim", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cmmd-side", help=argparse.SUPPRESS)  # ROWS:DIM, in the subprocess
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    if arguments.cmmd_side:
        rows, dim = (int(part) for part in arguments.cmmd_side.split(":"))
        print(json.dumps(cmmd_in_this_process(rows, dim)))
        return
    print(f"{arguments.threads} threads, torch {torch.__version__}, numpy {np.__version__}")
    cmmd_report(arguments.cmmd_rows, arguments.cmmd_dim, arguments.threads)  # first, while this process is small
    print()
    fid_report(arguments.fid_rows, arguments.fid_dim, arguments.repeats)


if __name__ == "__main__":
    main()
