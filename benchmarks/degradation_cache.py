"""``esq run degradation`` twice on the same config: cold (empty activation cache) then warm.

Issue "plugins-metrics (distribution) + degradations + esq run degradation + activation cache",
Measure: the warm-cache run ≥ 10× faster than the cold one.

Each run is one ``esq run degradation`` process, timed from start to exit as a user sees it
(imports included), on a fresh temporary cache folder, with the same options: by default
``mode = "quick"`` (50 reference and 25 evaluation images, the default layer, ``raw`` features,
FID, KID and CMMD, the four default degradations: 875 images through the backbone), ResNet-50 at
224 px (random initialisation: the timing does not depend on the weights), the built-in
photographs. The cold run extracts and writes the cache; the warm one must log only
``CACHE HIT`` and give the same ranking. A third run, also warm, changes the metrics and the
transforms (``gram_pca``, the GMM and KDE metrics added): it needs no extraction either.

    .venv/bin/python benchmarks/degradation_cache.py [--backbone resnet50] [--mode quick]
        [--image-size 224] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ESQ = Path(sys.executable).with_name("esq")


def run_once(folder: Path, settings: list[str], threads: int) -> tuple[float, dict, str]:
    """One ``esq run degradation`` process: its wall time, results.json and run.log."""
    arguments = [str(ESQ), "run", "degradation", "--output-dir", str(folder / "runs")]
    for setting in settings:
        arguments += ["--set", setting]
    environment = {**os.environ, "ESQ_CACHE_DIR": str(folder / "cache"), "OMP_NUM_THREADS": str(threads)}
    before = set((folder / "runs").glob("degradation/*"))
    started = time.perf_counter()
    subprocess.run(arguments, check=True, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    (directory,) = set((folder / "runs").glob("degradation/*")) - before
    return seconds, json.loads((directory / "results.json").read_text()), (directory / "run.log").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--mode", default="quick", choices=["quick", "medium", "full"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    base = [f"mode={arguments.mode}", f"backbones={arguments.backbone}", f"image_size={arguments.image_size}"]
    changed = [*base, "transforms=[raw,gram_pca]", "metrics=[fid,kid,cmmd,gmm_mahalanobis,gmm_nll,kde_nll]"]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        cold, first, cold_log = run_once(folder, base, arguments.threads)
        warm, second, warm_log = run_once(folder, base, arguments.threads)
        other, _, other_log = run_once(folder, changed, arguments.threads)
        cache_bytes = sum(path.stat().st_size for path in (folder / "cache").rglob("*") if path.is_file())
    ranking = [
        [r["layers"], r["transform"], r["metric"], r["mean_monotonicity"]] for r in first["summary"]["configurations"]
    ]
    same = ranking == [
        [r["layers"], r["transform"], r["metric"], r["mean_monotonicity"]] for r in second["summary"]["configurations"]
    ]
    report = {
        "backbone": arguments.backbone,
        "mode": arguments.mode,
        "image_size": arguments.image_size,
        "threads": arguments.threads,
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 2),
        "speedup_warm_vs_cold": round(cold / warm, 1),
        "warm_other_metrics_and_transforms_s": round(other, 2),
        "cache_MiB": round(cache_bytes / 2**20, 1),
        "cold_misses": cold_log.count("CACHE MISS"),
        "warm_hits": warm_log.count("CACHE HIT"),
        "warm_misses": warm_log.count("CACHE MISS") + other_log.count("CACHE MISS"),
        "same_ranking": same,
        "goal_met": cold / warm >= 10 and same and "CACHE MISS" not in warm_log + other_log,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
