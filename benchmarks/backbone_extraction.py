"""Feature extraction: esq's ``features()`` + ``gap`` pooling against the bare torchvision forward.

Issue "plugins-backbones", Measure: images per second for ``resnet50`` and ``vit_b_16`` at 224 px,
batch 32, on this CPU. The esq side is ``pool(backbone.features(x, tap), "gap")`` with the tap
``layer4`` (resnet50) or ``encoder.ln`` (vit_b_16); the bare side is the torchvision model with
esq's weights, its full forward ``model(x)`` under ``torch.inference_mode()`` in the default
(contiguous) memory format. For resnet50, whose esq backbone runs in ``channels_last`` by default,
a third side runs the bare forward with model and input in ``channels_last``, so the report
separates esq's layout choice from the cost of its hooks and pooling. Before timing, each bare
model is checked to compute esq's features (resnet50: the ``layer4`` maps; vit_b_16: the
``encoder.ln`` patch tokens), so the sides do like work. All sides take the same random batch,
alternate (rotating order) within each repeat after one untimed warm-up; medians are reported.

Peak memory: each side runs in fresh subprocesses (this script with a hidden ``--memory-side``,
``--memory-repeats`` of them, medians reported), each building its model and input, then running
one forward; reported are the process's peak RSS and the growth during that forward (its peak
minus the resident set just before it, after ``malloc_trim``). The peaks are read from ``VmHWM``
in ``/proc/self/status`` (Linux), reset before the forward through ``/proc/self/clear_refs``: a
child's ``ru_maxrss`` starts at its parent's peak (Linux carries it across fork and exec), so it
would report the parent's peak, not the side's. RSS moves by tens of MiB from run to run with
the heap's layout, so the first process also profiles a second forward and reports the peak of
live tensors over those live before it (torch's memory timeline, a private API: "n/a" if absent),
which is exact and repeatable.

Goals: esq ≥ 0.95× the bare images/s (hooks and pooling cost ≤ 5%); extraction memory ≤ 1.10×
that of the bare forward.

    .venv/bin/python benchmarks/backbone_extraction.py [--repeats 5] [--memory-repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torchvision
from memory import reset_peak, status_kib, tensor_growth
from torch import nn

import esq
from esq.builtin.pooling import pool

BATCH, SIZE = 32, 224
TAPS = {"resnet50": "layer4", "vit_b_16": "encoder.ln"}
SIDES = {"resnet50": ("bare", "bare_cl", "esq"), "vit_b_16": ("bare", "esq")}
LABELS = {"bare": "bare forward", "bare_cl": "bare forward, channels_last", "esq": "esq features + gap"}
SPEED_GOAL, MEMORY_GOAL = 0.95, 1.10
TOLERANCE = 1e-3  # max |difference| relative to max |value|


def batch() -> torch.Tensor:
    return torch.randn(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def build_esq(model: str) -> nn.Module:
    torch.manual_seed(0)
    return esq.registry("backbones").create(model, weights="none")


def build_bare(model: str, backbone: nn.Module | None = None) -> nn.Module:
    """The torchvision model; with ``backbone``, given its weights (esq's vit has no ``heads``)."""
    network = getattr(torchvision.models, model)(weights=None)
    if backbone is not None:
        result = network.load_state_dict(backbone.network.state_dict(), strict=False)
        if result.unexpected_keys or any(not key.startswith("heads.") for key in result.missing_keys):
            raise SystemExit(f"{model}: esq's weights do not fit the torchvision model: {result}")
    return network.eval().requires_grad_(False)


def to_channels_last(network: nn.Module) -> nn.Module:
    return network.to(memory_format=torch.channels_last)


def bare_features(model: str, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What esq's tap reads, computed the torchvision way."""
    with torch.inference_mode():
        if model == "resnet50":
            body = nn.Sequential(*list(network.children())[:-2])  # up to and including layer4
            return body(x)
        tokens = network._process_input(x)
        tokens = torch.cat([network.class_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        return network.encoder(tokens)[:, 1:]  # esq drops the class token


def check_same(model: str, backbone: nn.Module, bare: dict[str, nn.Module], x: torch.Tensor) -> None:
    """Each bare model computes esq's features (and pooled vectors) on a few of the images."""
    sample = x[:4]
    ours = backbone.features(sample, TAPS[model])
    pooled = pool(ours, "gap")
    ours_tensor = ours[TAPS[model]]
    for side, network in bare.items():
        image = sample.contiguous(memory_format=torch.channels_last) if side == "bare_cl" else sample
        theirs = bare_features(model, network, image)
        for what, a, b in (("features", ours_tensor, theirs), ("pooled", pooled, pool(theirs, "gap"))):
            if a.shape != b.shape:
                raise SystemExit(f"{model} {side}: {what} shapes differ, esq {tuple(a.shape)} vs {tuple(b.shape)}")
            error = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
            if error > TOLERANCE:
                raise SystemExit(
                    f"{model} {side}: esq and the bare model disagree on the {what} (relative error {error:.2e}); "
                    "the timing would compare unlike work"
                )
        print(f"  check {model} {side}: same {TAPS[model]} features as esq, shape {tuple(ours_tensor.shape)}")


def runners(model: str, backbone: nn.Module, bare: dict[str, nn.Module], x: torch.Tensor) -> dict[str, Callable]:
    tap = TAPS[model]
    inputs = {side: x.contiguous(memory_format=torch.channels_last) if side == "bare_cl" else x for side in bare}

    def bare_runner(side: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return bare[side](inputs[side])

        return run

    result: dict[str, Callable[[], torch.Tensor]] = {side: bare_runner(side) for side in bare}
    result["esq"] = lambda: pool(backbone.features(x, tap), "gap")
    return result


def seconds(run: Callable[[], torch.Tensor]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure_memory(model: str, side: str, profile_tensors: bool) -> dict[str, int]:
    """Build one side, run one forward; peak RSS and the forward's growth in KiB."""
    x = batch()
    if side == "esq":
        backbone = build_esq(model)
        run = lambda: pool(backbone.features(x, TAPS[model]), "gap")  # noqa: E731
    else:
        network = build_bare(model)
        if side == "bare_cl":
            network, x = to_channels_last(network), x.contiguous(memory_format=torch.channels_last)

        def run() -> torch.Tensor:
            with torch.inference_mode():
                return network(x)

    try:  # hand freed heap back, so the resident set before the forward is what is live
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    peak_building, before = status_kib("VmHWM"), status_kib("VmRSS")
    was_reset = reset_peak()
    output = run()
    peak_forward = status_kib("VmHWM")
    del output
    return {
        "resident_before": before,
        "peak": max(peak_building, peak_forward),
        "growth": peak_forward - before,
        "exact": was_reset or peak_forward > peak_building,
        "tensor_growth": tensor_growth(run) if profile_tensors else -1,
    }


def memory_in_subprocess(model: str, side: str, threads: int, profile_tensors: bool) -> dict[str, int]:
    command = [sys.executable, os.path.abspath(__file__), "--memory-side", f"{model}:{side}", "--threads", str(threads)]
    done = subprocess.run(command + (["--profile-tensors"] if profile_tensors else []), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"memory run {model}:{side} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_of(model: str, side: str, threads: int, repeats: int) -> dict[str, float]:
    """Medians over ``repeats`` fresh processes (RSS varies run to run with the heap's layout);
    the tensor figure, deterministic, from the first."""
    runs = [memory_in_subprocess(model, side, threads, profile_tensors=index == 0) for index in range(repeats)]
    if not all(run["exact"] for run in runs):
        print(f"  note: {model} {side}: the peak could not be reset; the forward's growth is a lower bound")
    return {
        "peak": statistics.median(run["peak"] for run in runs),
        "growth": statistics.median(run["growth"] for run in runs),
        "growths": [run["growth"] for run in runs],
        "tensor_growth": runs[0]["tensor_growth"],
    }


def time_model(model: str, x: torch.Tensor, repeats: int) -> dict[str, list[float]]:
    backbone = build_esq(model)
    bare = {"bare": build_bare(model, backbone)}
    if "bare_cl" in SIDES[model]:
        bare["bare_cl"] = to_channels_last(copy.deepcopy(bare["bare"]))
    check_same(model, backbone, bare, x)
    runs = runners(model, backbone, bare, x)
    sides = SIDES[model]
    for side in sides:  # warm-up, untimed
        runs[side]()
    times: dict[str, list[float]] = {side: [] for side in sides}
    for repeat in range(repeats):
        shift = repeat % len(sides)  # rotate the order, so no side always goes first
        for side in sides[shift:] + sides[:shift]:
            times[side].append(seconds(runs[side]))
        print(f"  {model} repeat {repeat + 1}: " + ", ".join(f"{side} {times[side][-1]:.2f} s" for side in sides))
    return times


def verdict(ratio: float, goal: float, at_least: bool) -> str:
    return "met" if (ratio >= goal if at_least else ratio <= goal) else "NOT met"


def ratio_text(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.3f}x" if ours > 0 and theirs > 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per side for the RSS")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-side", help=argparse.SUPPRESS)  # MODEL:SIDE, in the subprocess
    parser.add_argument("--profile-tensors", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    if arguments.memory_side:
        model, side = arguments.memory_side.split(":")
        print(json.dumps(measure_memory(model, side, arguments.profile_tensors)))
        return

    print(
        f"batch {BATCH}×3×{SIZE}×{SIZE}, {arguments.repeats} timing repeats, {arguments.memory_repeats} memory "
        f"processes per side (medians), {arguments.threads} threads, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}"
    )
    mib = 1024
    memory: dict[str, dict[str, dict]] = {}
    for model, sides in SIDES.items():  # first, while this process is small
        memory[model] = {side: memory_of(model, side, arguments.threads, arguments.memory_repeats) for side in sides}
        for side in sides:
            growths = ", ".join(f"{growth / mib:.0f}" for growth in memory[model][side]["growths"])
            print(f"  memory {model} {side}: forward +MiB RSS {growths}")
    x = batch()
    speed: dict[str, dict[str, float]] = {}
    for model in SIDES:
        times = time_model(model, x, arguments.repeats)
        speed[model] = {side: BATCH / statistics.median(values) for side, values in times.items()}

    print()
    print(
        f"{'model':<10}{'side':<30}{'images/s':>9}{'esq/side':>10}{'peak RSS':>10}{'esq/side':>10}"
        f"{'fwd RSS+':>10}{'esq/side':>10}{'tensors+':>10}{'esq/side':>10}"
    )
    print(f"{'':<40}{'':>9}{'':>10}{'MiB':>10}{'':>10}{'MiB':>10}{'':>10}{'MiB':>10}")
    for model, sides in SIDES.items():
        ours_speed, ours = speed[model]["esq"], memory[model]["esq"]
        for side in sides:
            record = memory[model][side]
            row = f"{model:<10}{LABELS[side]:<30}{speed[model][side]:>9.2f}"
            row += f"{'' if side == 'esq' else ratio_text(ours_speed, speed[model][side]):>10}"
            for key in ("peak", "growth", "tensor_growth"):
                figure = f"{record[key] / mib:.0f}" if record[key] >= 0 else "n/a"
                row += f"{figure:>10}{'' if side == 'esq' else ratio_text(ours[key], record[key]):>10}"
            print(row)
    print()
    print(f"goals: images/s esq/bare ≥ {SPEED_GOAL:.2f}x; extraction memory esq/bare ≤ {MEMORY_GOAL:.2f}x")
    for model, sides in SIDES.items():
        ours = memory[model]["esq"]
        for side in (s for s in sides if s != "esq"):
            speed_ratio = speed[model]["esq"] / speed[model][side]
            parts = [f"speed {speed_ratio:.3f}x {verdict(speed_ratio, SPEED_GOAL, True)}"]
            for key, what in (("peak", "peak RSS"), ("growth", "forward RSS"), ("tensor_growth", "forward tensors")):
                if ours[key] > 0 and memory[model][side][key] > 0:
                    ratio = ours[key] / memory[model][side][key]
                    parts.append(f"{what} {ratio:.3f}x {verdict(ratio, MEMORY_GOAL, False)}")
            print(f"  {model} vs {LABELS[side]}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
