"""Similarity metrics: esq's CKA against ckatorch, esq's RSA against rsatoolbox; all six at scale.

Issue 6, Measure. Features: seeded float32, d = 768 (``--dim``): x has rank-64 structure plus
noise (a 64-d latent mapped up, then isotropic noise of half its scale); y = x + noise of standard
deviation 0.5·std(x), so the values are well below 1 without being trivial. The same arrays go to
every side.

Part 1, the peers, N = 5,000 (``--n-peer``), one run, each side timed from the float32 features
to the value, the way a user calls it:

- CKA (linear kernel, biased HSIC, both libraries' default): ``esq_metrics.cka(x, y)`` against
  ckatorch's ``cka_base(torch.from_numpy(x), torch.from_numpy(y))`` (it casts to float64 itself,
  builds the two N×N Gram matrices, centres them and takes Frobenius products);
- RSA (1 − Pearson correlation RDMs, Spearman correlation of their upper triangles):
  ``esq_metrics.rsa(x, y)`` (exact below ``max_pairs`` = 5·10⁷ pairs, N ≈ 10,000) against
  rsatoolbox's ``compare(calc_rdm(Dataset(x), method="correlation"), calc_rdm(Dataset(y), ...),
  method="spearman")`` (average ranks through ``scipy.stats.rankdata``, then the cosine of the
  centred ranks: the tie-corrected Spearman ρ, as esq's).

Each side has one small untimed warm-up (200 rows), then ``--repeats`` timed calls, esq and the
peer alternating (the order swaps every repeat); medians are reported. Goals: ckatorch takes
≥ 10× esq's time, rsatoolbox ≥ 3×, and every peer's value within 1e-6 of esq's.

Part 2, scale: each of the six esq metrics (``cka``, ``pwcca``, ``geometry``, ``rsa``,
``relational``, ``jaccard_knn``, default options) once at N = 20,000 (``--n-all``), each in a
fresh process that builds the features, resets its peak resident set (``/proc/self/clear_refs``,
Linux) and times one call: the peak resident set of that process during the call (``VmHWM``,
interpreter, torch and the inputs included) and its growth over the call are reported. Goals:
the six take ≤ 60 s in total and none peaks above 4 GiB. ``--large`` adds N = 100,000 (minutes:
``relational`` and ``jaccard_knn`` are exact over all N² pairs), goal ≤ 8 GiB peak each.

Threads: ``--threads`` (default 2) sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` before NumPy, torch or a peer is imported, and ``torch.set_num_threads``; the
subprocesses inherit them. The machine may be shared: the load average at the start and the end
is part of the report.

Output: progress on stderr; a table on stdout, or with ``--json`` the JSON document on stdout
(the table then goes to stderr).

    .venv/bin/python benchmarks/similarity_metrics.py [--n-peer 5000] [--n-all 20000] [--large]
        [--dim 768] [--threads 2] [--repeats 3] [--json] [--skip-peers] [--skip-all]

A quick check of the whole script: ``--n-peer 500 --n-all 2000``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_from_command_line() -> int:
    """``--threads`` (default 2), read before the thread pools exist: they size themselves from the
    environment when NumPy and torch are first imported."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_known_args()[0].threads


THREADS = threads_from_command_line()
for variable in THREAD_VARIABLES:
    os.environ[variable] = str(THREADS)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from memory import reset_peak, status_kib  # noqa: E402

import esq_metrics  # noqa: E402
from esq_metrics.cka import CKA  # noqa: E402
from esq_metrics.geometry import Geometry  # noqa: E402
from esq_metrics.jaccard_knn import JaccardKNN  # noqa: E402
from esq_metrics.pwcca import PWCCA  # noqa: E402
from esq_metrics.relational import Relational  # noqa: E402
from esq_metrics.rsa import RSA  # noqa: E402

LATENT = 64
METRICS = {
    "cka": CKA,
    "pwcca": PWCCA,
    "geometry": Geometry,
    "rsa": RSA,
    "relational": Relational,
    "jaccard_knn": JaccardKNN,
}
SPEED_GOALS = {"cka": 10.0, "rsa": 3.0}
VALUE_GOAL = 1e-6
ALL_SECONDS_GOAL, ALL_MEMORY_GOAL_GIB, LARGE_N, LARGE_MEMORY_GOAL_GIB = 60.0, 4.0, 100_000, 8.0
WARM_UP_ROWS = 200
GIB = 1024**3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def features(rows: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Paired float32 features: x of rank-``LATENT`` structure plus noise, y = x + 0.5·std(x) noise."""
    generator = np.random.default_rng(0)
    basis = generator.standard_normal((LATENT, dim), dtype=np.float32) / np.float32(np.sqrt(LATENT))
    x = generator.standard_normal((rows, LATENT), dtype=np.float32) @ basis
    x += np.float32(0.5) * generator.standard_normal((rows, dim), dtype=np.float32)
    y = generator.standard_normal((rows, dim), dtype=np.float32)
    y *= np.float32(0.5 * x.std())
    y += x
    return x, y


def peer_sides(x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, Callable[[], float]]]:
    """``{metric: {side: data → value}}``; the peers are imported here, not at the top, so that the
    ``--measure`` processes do not carry their modules in the resident set they measure."""
    from ckatorch.core import cka_base
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import calc_rdm, compare

    def ckatorch_cka() -> float:
        return float(cka_base(torch.from_numpy(x), torch.from_numpy(y)))

    def rsatoolbox_rsa() -> float:
        rdm_x = calc_rdm(Dataset(x), method="correlation")
        rdm_y = calc_rdm(Dataset(y), method="correlation")
        return float(compare(rdm_x, rdm_y, method="spearman")[0, 0])

    return {
        "cka": {"esq": lambda: esq_metrics.cka(x, y), "ckatorch": ckatorch_cka},
        "rsa": {"esq": lambda: esq_metrics.rsa(x, y), "rsatoolbox": rsatoolbox_rsa},
    }


def time_sides(metric: str, sides: dict[str, Callable[[], float]], repeats: int) -> dict[str, dict[str, Any]]:
    """Each side's timed calls (the order swaps every repeat), their median and the value."""
    results: dict[str, dict[str, Any]] = {name: {"times": []} for name in sides}
    names = list(sides)
    for repeat in range(repeats):
        for name in names[repeat % 2 :] + names[: repeat % 2]:
            started = time.perf_counter()
            value = sides[name]()
            seconds = time.perf_counter() - started
            results[name]["times"].append(seconds)
            results[name]["value"] = value
            log(f"  {metric} {name}: {seconds:.3f} s, value {value:.15f}")
    for result in results.values():
        result["seconds"] = statistics.median(result["times"])
    return results


def peer_report(rows: int, dim: int, repeats: int) -> dict[str, Any]:
    log(f"peers: N = {rows}, d = {dim}, {repeats} repeats")
    x, y = features(rows, dim)
    for sides in peer_sides(x[:WARM_UP_ROWS], y[:WARM_UP_ROWS]).values():
        for run in sides.values():
            run()  # warm-up, untimed: imports and first-call costs
    comparisons = {}
    for metric, sides in peer_sides(x, y).items():
        results = time_sides(metric, sides, repeats)
        peer = next(name for name in sides if name != "esq")
        speed_up = results[peer]["seconds"] / results["esq"]["seconds"]
        difference = abs(results[peer]["value"] - results["esq"]["value"])
        comparisons[metric] = {
            "peer": peer,
            "sides": results,
            "speed_up": speed_up,
            "absolute_difference": difference,
            "goals": {
                f"speed_up_>=_{SPEED_GOALS[metric]:.0f}x": speed_up >= SPEED_GOALS[metric],
                f"difference_<=_{VALUE_GOAL:.0e}": difference <= VALUE_GOAL,
            },
        }
    return {"n": rows, "dim": dim, "repeats": repeats, "dtype": "float32", "comparisons": comparisons}


def measure_in_this_process(metric: str, rows: int, dim: int) -> dict[str, Any]:
    """One call of ``metric`` on fresh features: value, seconds, peak and growth of the resident set."""
    x, y = features(rows, dim)
    component = METRICS[metric]()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    peak_reset = reset_peak()  # where it cannot, the peak also covers building the features
    before = status_kib("VmRSS") * 1024
    started = time.perf_counter()
    result = component(x, y)
    seconds = time.perf_counter() - started
    peak = status_kib("VmHWM") * 1024
    scalars = {key: value for key, value in result.details.items() if isinstance(value, bool | int | float | str)}
    return {
        "value": result.value,
        "seconds": seconds,
        "peak_rss_bytes": peak,
        "growth_bytes": peak - before,
        "rss_before_bytes": before,
        "inputs_bytes": x.nbytes + y.nbytes,
        "peak_reset": peak_reset,
        "details": scalars,
    }


def measure(metric: str, rows: int, dim: int, threads: int) -> dict[str, Any]:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        *("--measure", metric, "--n", str(rows), "--dim", str(dim), "--threads", str(threads)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def all_report(rows: int, dim: int, threads: int, memory_goal_gib: float, seconds_goal: float | None) -> dict[str, Any]:
    log(f"all six: N = {rows}, d = {dim}, each in a fresh process")
    metrics = {}
    for metric in METRICS:
        metrics[metric] = measure(metric, rows, dim, threads)
        log(
            f"  {metric}: {metrics[metric]['seconds']:.2f} s, peak {metrics[metric]['peak_rss_bytes'] / GIB:.3f} GiB, "
            f"value {metrics[metric]['value']:.6f}"
        )
    total = sum(result["seconds"] for result in metrics.values())
    peak = max(result["peak_rss_bytes"] for result in metrics.values())
    goals = {f"max_peak_<=_{memory_goal_gib:.0f}_GiB": peak <= memory_goal_gib * GIB}
    if seconds_goal is not None:
        goals[f"total_<=_{seconds_goal:.0f}_s"] = total <= seconds_goal
    return {
        "n": rows,
        "dim": dim,
        "metrics": metrics,
        "total_seconds": total,
        "max_peak_rss_bytes": peak,
        "max_peak_rss_gib": peak / GIB,
        "memory_goal_gib": memory_goal_gib,
        "seconds_goal": seconds_goal,
        "goals": goals,
    }


def peer_table(report: dict[str, Any]) -> list[str]:
    lines = [
        f"Peers: N = {report['n']}, d = {report['dim']}, float32 features, "
        f"{report['repeats']} timed calls per side (medians)",
        f"{'metric':<8}{'side':<12}{'seconds':>9}{'peer/esq':>10}{'value':>21}{'|difference|':>14}",
    ]
    verdicts = []
    for metric, comparison in report["comparisons"].items():
        for name, side in comparison["sides"].items():
            is_peer = name != "esq"
            ratio = f"{comparison['speed_up']:.2f}x" if is_peer else ""
            difference = f"{comparison['absolute_difference']:.1e}" if is_peer else ""
            lines.append(
                f"{metric:<8}{name:<12}{side['seconds']:>9.3f}{ratio:>10}{side['value']:>21.15f}{difference:>14}"
            )
        verdicts.append(
            f"  {metric}: {comparison['peer']} takes {comparison['speed_up']:.2f}x esq's time "
            f"(goal ≥ {SPEED_GOALS[metric]:.0f}x: {verdict(comparison['speed_up'] >= SPEED_GOALS[metric])}); "
            f"values {comparison['absolute_difference']:.1e} apart "
            f"(goal ≤ {VALUE_GOAL:.0e}: {verdict(comparison['absolute_difference'] <= VALUE_GOAL)})"
        )
    return [*lines, "goals:", *verdicts]


def notes(result: dict[str, Any]) -> str:
    details = result["details"]
    if details.get("sampled"):
        return f"sampled {details['rows']} rows ({details['pairs']} pairs)"
    if "pairs" in details:
        return f"exact ({details['pairs']} pairs)"
    return "" if result["peak_reset"] else "peak includes building the features"


def all_table(report: dict[str, Any]) -> list[str]:
    lines = [
        f"All six: N = {report['n']}, d = {report['dim']}, one call each in a fresh process",
        f"{'metric':<13}{'seconds':>9}{'peak GiB':>10}{'growth GiB':>12}{'value':>11}  notes",
    ]
    for metric, result in report["metrics"].items():
        lines.append(
            f"{metric:<13}{result['seconds']:>9.2f}{result['peak_rss_bytes'] / GIB:>10.3f}"
            f"{result['growth_bytes'] / GIB:>12.3f}{result['value']:>11.6f}  {notes(result)}"
        )
    lines.append(f"{'total / max':<13}{report['total_seconds']:>9.2f}{report['max_peak_rss_gib']:>10.3f}")
    inputs = next(iter(report["metrics"].values()))["inputs_bytes"] / GIB
    lines.append(f"  (peak: the whole process's resident set, inputs of {inputs:.3f} GiB included)")
    goals = [f"max peak ≤ {report['memory_goal_gib']:.0f} GiB: {report['max_peak_rss_gib']:.3f} GiB"]
    goals[0] += f" ({verdict(report['max_peak_rss_gib'] <= report['memory_goal_gib'])})"
    if report["seconds_goal"] is not None:
        met = report["total_seconds"] <= report["seconds_goal"]
        goals.append(f"total ≤ {report['seconds_goal']:.0f} s: {report['total_seconds']:.1f} s ({verdict(met)})")
    return [*lines, f"goals: {'; '.join(goals)}"]


def machine() -> dict[str, Any]:
    return {
        "threads": THREADS,
        "thread_variables": {variable: os.environ[variable] for variable in THREAD_VARIABLES},
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{name: version(name) for name in ("numpy", "scipy", "ckatorch", "rsatoolbox")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-peer", type=int, default=5_000, help="rows for the comparison with the peers")
    parser.add_argument("--n-all", type=int, default=20_000, help="rows for the six metrics at scale")
    parser.add_argument("--large", action="store_true", help=f"also the six at N = {LARGE_N} (minutes)")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2, help="threads for NumPy's BLAS, OpenMP and torch")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per side with the peers (median)")
    parser.add_argument("--json", action="store_true", help="the JSON document on stdout, the table on stderr")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument("--skip-all", action="store_true")
    parser.add_argument("--measure", choices=list(METRICS), help=argparse.SUPPRESS)  # in the subprocess
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)  # rows, in the subprocess
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    if arguments.measure:
        print(json.dumps(measure_in_this_process(arguments.measure, arguments.n, arguments.dim)))
        return

    report: dict[str, Any] = {"machine": machine(), "load_average_start": os.getloadavg()}
    table = [
        f"{THREADS} threads, {os.cpu_count()} CPUs, torch {torch.__version__}, numpy {np.__version__}, "
        f"ckatorch {report['machine']['ckatorch']}, rsatoolbox {report['machine']['rsatoolbox']}"
    ]
    if not arguments.skip_peers:
        report["peers"] = peer_report(arguments.n_peer, arguments.dim, arguments.repeats)
        table += ["", *peer_table(report["peers"])]
    if not arguments.skip_all:
        report["all"] = all_report(arguments.n_all, arguments.dim, THREADS, ALL_MEMORY_GOAL_GIB, ALL_SECONDS_GOAL)
        table += ["", *all_table(report["all"])]
        if arguments.large:
            report["large"] = all_report(LARGE_N, arguments.dim, THREADS, LARGE_MEMORY_GOAL_GIB, None)
            table += ["", *all_table(report["large"])]
    report["load_average_end"] = os.getloadavg()
    loads = (report["load_average_start"][0], report["load_average_end"][0])
    busy = f": above this run's {THREADS} threads, other work shared the CPUs" if max(loads) > THREADS + 0.5 else ""
    table += [
        "",
        f"load average (1 min) at start {report['load_average_start'][0]:.2f}, at end "
        f"{report['load_average_end'][0]:.2f}, on {os.cpu_count()} CPUs{busy}",
    ]
    if arguments.json:
        log("\n".join(line.rstrip() for line in table))
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(line.rstrip() for line in table))


if __name__ == "__main__":
    main()
