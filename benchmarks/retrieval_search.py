"""Top-10 retrieval search: esq's ``ExactRetriever`` against faiss and the official per-query loop.

Issue 8, Measure. Random L2-normalised float32 features (seeded), d = 512: 150,000 "texts" and
30,000 "images" (``--queries``, ``--keys``, ``--dim``). Two directions in one run: text→image
(the texts search the images) and image→text (the images search the texts). Sides, all on the
same arrays and the same number of threads (``torch.set_num_threads`` and
``faiss.omp_set_num_threads``, ``--threads``):

- esq: ``ExactRetriever(threads=...)``, ``index(keys)`` then ``search(queries, 10)``;
- faiss: ``IndexFlatIP``, ``add(keys)`` then ``search(queries, 10)``;
- the official loop: Chinese-CLIP's ``cn_clip/eval/make_topk_predictions.py`` computes, for each
  text, its inner products with the images in batches of 32,768 (``text @ images.T``), turns them
  into a Python list of (id, score) pairs, sorts that list and keeps ten. Reimplemented here on
  CPU (the original needs CUDA) without the file reading and writing; a sample of
  ``--official-sample`` queries is timed and the time extrapolated to all queries.

Search times exclude ``index``/``add`` (reported apart); esq and faiss run ``--repeats`` times,
alternating, after one small untimed warm-up each, and medians are reported. esq's and faiss's
top-10 ids are compared row by row; rows that differ are checked against float64 scores.

Peak extra memory of esq (index + search) is measured in a fresh process per direction: the
growth of the resident set during the calls (``VmHWM`` after minus ``VmRSS`` before, the peak
reset through ``/proc/self/clear_refs``, Linux), the features themselves not counted.

Throughput: the median of ``torch.mm`` on a 4096×512 @ 512×4096 product in float32 (and in
bfloat16, which esq's screening uses on CPUs with AMX tiles); the search's FLOPs are 2·Q·N·d
(the products it replaces), and the report gives the rate the search reaches and its fraction of
the float32 ``torch.mm`` rate (above 1: faster than a float32 product alone could be).

Goals: esq ≥ 1.3× faster than faiss and ≥ 100× faster than the official loop, in both
directions; peak extra memory ≤ 2 GiB. The full sizes take about 2 minutes on 2 cores.

    .venv/bin/python benchmarks/retrieval_search.py [--queries 150000] [--keys 30000] [--dim 512]
        [--threads 2] [--repeats 1] [--official-sample 200]
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

import faiss
import numpy as np
import torch
from memory import reset_peak, status_kib

from esq_clip.retrievers import ExactRetriever

TOP_K, OFFICIAL_BATCH = 10, 32768
FAISS_GOAL, OFFICIAL_GOAL, MEMORY_GOAL_GIB = 1.3, 100.0, 2.0
GIB = 1024**3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def features(rows: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def directions(texts: int, images: int, dim: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{direction: (queries, keys)}``."""
    text_features, image_features = features(texts, dim, seed=0), features(images, dim, seed=1)
    return {"text_to_image": (text_features, image_features), "image_to_text": (image_features, text_features)}


def mm_throughput(dtype: torch.dtype, repeats: int = 10) -> float:
    """GFLOP/s of ``torch.mm`` on 4096×512 @ 512×4096 (median)."""
    a, b = torch.randn(4096, 512).to(dtype), torch.randn(512, 4096).to(dtype)
    out = torch.empty(4096, 4096, dtype=dtype)
    times = []
    for repeat in range(repeats + 2):
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        if repeat >= 2:
            times.append(time.perf_counter() - started)
    return 2 * 4096 * 4096 * 512 / statistics.median(times) / 1e9


def esq_search(queries: np.ndarray, keys: np.ndarray, threads: int) -> tuple[float, float, np.ndarray]:
    """Seconds to index, seconds to search, ids."""
    started = time.perf_counter()
    retriever = ExactRetriever(threads=threads).index(keys)
    indexed = time.perf_counter()
    _, ids = retriever.search(queries, TOP_K)
    return indexed - started, time.perf_counter() - indexed, ids.numpy()


def faiss_search(queries: np.ndarray, keys: np.ndarray) -> tuple[float, float, np.ndarray]:
    started = time.perf_counter()
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    indexed = time.perf_counter()
    _, ids = index.search(queries, TOP_K)
    return indexed - started, time.perf_counter() - indexed, ids


def official_loop(queries: np.ndarray, keys: np.ndarray) -> list[list[int]]:
    """make_topk_predictions.py's computation, on CPU: per query, batched products, a sorted list."""
    key_ids = list(range(keys.shape[0]))
    predictions = []
    for query in queries:
        query_tensor = torch.tensor(query[None, :], dtype=torch.float)
        pairs = []
        for start in range(0, len(key_ids), OFFICIAL_BATCH):
            batch = torch.from_numpy(keys[start : start + OFFICIAL_BATCH])
            batch_scores = query_tensor @ batch.t()
            pairs.extend(zip(key_ids[start : start + OFFICIAL_BATCH], batch_scores.squeeze(0).tolist(), strict=True))
        predictions.append([key for key, _ in sorted(pairs, key=lambda pair: pair[1], reverse=True)[:TOP_K]])
    return predictions


def disagreements(queries: np.ndarray, keys: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Rows whose top-10 ids differ; on those rows, whether each side equals the reference order
    (−float32 of the float64 score, id), and how far apart in float64 the two sides' scores are."""
    rows = np.flatnonzero((ours != theirs).any(axis=1))
    detail = {"rows": int(rows.size), "rows_fraction": rows.size / len(ours)}
    if rows.size:
        exact = queries[rows].astype(np.float64) @ keys.astype(np.float64).T
        rounded = exact.astype(np.float32)
        reference = np.lexsort((np.broadcast_to(np.arange(keys.shape[0]), rounded.shape), -rounded))[:, :TOP_K]
        for name, ids in (("esq", ours), ("other", theirs)):
            detail[f"{name}_equals_reference"] = bool((ids[rows] == reference).all())
        gaps = np.abs(np.take_along_axis(exact, ours[rows], 1) - np.take_along_axis(exact, theirs[rows], 1))
        detail["largest_float64_score_difference"] = float(gaps.max())
        detail["first_rows"] = rows[:5].tolist()
    return detail


def memory_side(direction: str, texts: int, images: int, dim: int, threads: int) -> dict:
    """esq's index + search in this (fresh) process: seconds and resident-set growth."""
    queries, keys = directions(texts, images, dim)[direction]
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    if not reset_peak():
        raise SystemExit("cannot reset the peak resident set through /proc/self/clear_refs")
    before = status_kib("VmRSS")
    indexing, searching, _ = esq_search(queries, keys, threads)
    return {"growth_bytes": (status_kib("VmHWM") - before) * 1024, "index_s": indexing, "search_s": searching}


def measure_memory(direction: str, arguments: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-side",
        direction,
        *("--queries", str(arguments.queries), "--keys", str(arguments.keys)),
        *("--dim", str(arguments.dim), "--threads", str(arguments.threads)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def direction_report(
    direction: str, queries: np.ndarray, keys: np.ndarray, arguments: argparse.Namespace, mm_float32: float
) -> dict:
    log(f"{direction}: {len(queries)} queries over {len(keys)} keys, d = {keys.shape[1]}")
    esq_search(queries[:200], keys[:2000], arguments.threads)  # warm-up, untimed
    faiss_search(queries[:200], keys[:2000])
    sides = {"esq": lambda: esq_search(queries, keys, arguments.threads), "faiss": lambda: faiss_search(queries, keys)}
    times: dict[str, list[float]] = {name: [] for name in sides}
    index_times: dict[str, list[float]] = {name: [] for name in sides}
    ids: dict[str, np.ndarray] = {}
    names = list(sides)
    for repeat in range(arguments.repeats):
        for name in names[repeat % 2 :] + names[: repeat % 2]:
            indexing, searching, ids[name] = sides[name]()
            index_times[name].append(indexing)
            times[name].append(searching)
            log(f"  {name}: search {searching:.2f} s (index {indexing:.2f} s)")
    esq_s, faiss_s = statistics.median(times["esq"]), statistics.median(times["faiss"])

    sample = np.random.default_rng(2).choice(
        len(queries), size=min(arguments.official_sample, len(queries)), replace=False
    )
    started = time.perf_counter()
    official_ids = np.array(official_loop(queries[sample], keys))
    per_query = (time.perf_counter() - started) / len(sample)
    official_s = per_query * len(queries)
    log(f"  official loop: {per_query * 1e3:.1f} ms per query, {official_s:.0f} s extrapolated")

    flops = 2 * len(queries) * len(keys) * keys.shape[1]
    memory = measure_memory(direction, arguments)
    log(f"  esq peak extra memory (fresh process): {memory['growth_bytes'] / GIB:.3f} GiB")
    return {
        "queries": len(queries),
        "keys": len(keys),
        "seconds": {
            "esq_search": esq_s,
            "faiss_search": faiss_s,
            "official_loop_extrapolated": official_s,
            "official_loop_per_query": per_query,
            "official_loop_sample": len(sample),
            "esq_index": statistics.median(index_times["esq"]),
            "faiss_add": statistics.median(index_times["faiss"]),
        },
        "speed_up": {"vs_faiss": faiss_s / esq_s, "vs_official_loop": official_s / esq_s},
        "throughput": {
            "search_flops": flops,
            "esq_gflops": flops / esq_s / 1e9,
            "faiss_gflops": flops / faiss_s / 1e9,
            "esq_fraction_of_float32_mm": flops / esq_s / 1e9 / mm_float32,
            "faiss_fraction_of_float32_mm": flops / faiss_s / 1e9 / mm_float32,
        },
        "agreement": {
            "esq_vs_faiss_ids": disagreements(queries, keys, ids["esq"], ids["faiss"]),
            "esq_vs_official_ids_on_sample": disagreements(queries[sample], keys, ids["esq"][sample], official_ids),
        },
        "memory": {
            "esq_peak_extra_bytes": memory["growth_bytes"],
            "esq_peak_extra_gib": memory["growth_bytes"] / GIB,
            "inputs_gib": (queries.nbytes + keys.nbytes) / GIB,
        },
        "goals": {
            f"vs_faiss_>=_{FAISS_GOAL}x": faiss_s / esq_s >= FAISS_GOAL,
            f"vs_official_>=_{OFFICIAL_GOAL:.0f}x": official_s / esq_s >= OFFICIAL_GOAL,
            f"memory_<=_{MEMORY_GOAL_GIB:.0f}_GiB": memory["growth_bytes"] <= MEMORY_GOAL_GIB * GIB,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=150_000, help="text features (queries of text→image)")
    parser.add_argument("--keys", type=int, default=30_000, help="image features (keys of text→image)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--official-sample", type=int, default=200)
    parser.add_argument("--memory-side", help=argparse.SUPPRESS)  # a direction, in the subprocess
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    faiss.omp_set_num_threads(arguments.threads)
    if arguments.memory_side:
        side = memory_side(arguments.memory_side, arguments.queries, arguments.keys, arguments.dim, arguments.threads)
        print(json.dumps(side))
        return
    mm_float32, mm_bfloat16 = mm_throughput(torch.float32), mm_throughput(torch.bfloat16)
    log(f"torch.mm 4096×512 @ 512×4096: float32 {mm_float32:.0f} GFLOP/s, bfloat16 {mm_bfloat16:.0f} GFLOP/s")
    retriever = ExactRetriever().index(np.eye(4, dtype=np.float32))
    report = {
        "machine": {
            "threads": arguments.threads,
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "faiss": faiss.__version__,
            "esq_screen": retriever.screen_,
            "torch_mm_float32_gflops": mm_float32,
            "torch_mm_bfloat16_gflops": mm_bfloat16,
        },
        "top_k": TOP_K,
        "dim": arguments.dim,
        "directions": {
            direction: direction_report(direction, queries, keys, arguments, mm_float32)
            for direction, (queries, keys) in directions(arguments.queries, arguments.keys, arguments.dim).items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
