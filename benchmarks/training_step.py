"""One training step of ``squeeze`` (vq) against ``baseline`` on the same frozen backbone and batch.

Issue 5's measure: a squeeze step costs at most 1.25× a baseline step (the quantizer at most a
quarter of the frozen backbone's forward), and its peak memory is at most 1.3× that of an
inference forward (no activations are kept for the frozen part).

The sides, all on one seeded batch (uint8 images ``(B, 3, S, S)``, int64 masks ``(B, S, S)``):

- ``squeeze``: ``SegmentationModule(quantizer="vq", codebook_size 512, bottleneck_dim 64)``;
- ``baseline``: ``SegmentationModule(quantizer="none")``, the same backbone (same seed, checked);
- ``inference``: the backbone's forward ``backbone(preprocess(images))`` → logits, in eval mode,
  under ``torch.inference_mode()``;
- ``frozen``: ``backbone.embed(preprocess(images))`` alone, the same way: the frozen part.

A step is what Lightning runs per batch without its loop: ``optimizer.zero_grad()``,
``loss = module.training_step((images, masks), 0)``, ``loss.backward()``, ``optimizer.step()``,
with ``optimizer = module.configure_optimizers()`` and the module in train mode (the backbone's
frozen network stays in eval by design). ``training_step`` runs unmodified; with no Trainer
attached its ``self.log`` calls warn and return at once (Lightning allows this for testing
steps), so logging's cost, a few scalars per step, is left out with the loop's. Random weights
(nothing is downloaded). After one untimed warm-up each, the sides alternate, rotating the order,
``--repeats`` times; medians are reported, with squeeze/baseline (also the median of each
repeat's ratio, steadier on a loaded machine) and the quantizer's share: (squeeze − baseline) /
frozen.

Peak memory: each side runs in fresh subprocesses (this script with ``--measure-memory SIDE``,
``--memory-repeats`` of them, medians reported) that build the side and run it once (for the
steps: Adam's state and the first gradients exist from then on), then, after ``malloc_trim``,
reset the peak resident set (``/proc/self/clear_refs``; a child's ``ru_maxrss`` would start at
its parent's) and run it again: reported are the process's peak RSS (``VmHWM``) and the growth
during that run over the resident set before it. RSS moves by tens of MiB with the heap's layout,
so the first process also profiles a third run and reports the peak of live tensors over those
live before it (torch's memory timeline, a private API: "n/a" if absent): no heap noise, though
for the steps the start of the timeline moves by a few tens of MiB from run to run. Goal: squeeze
step / inference forward ≤ 1.3× on the growth (the process's whole peak RSS, mostly weights and
libraries, is shown for reference).

``--profile`` adds torch.profiler's top operators of one squeeze and one baseline step, to see
where the difference goes.

    .venv/bin/python benchmarks/training_step.py [--backbone deeplabv3_resnet50] [--batch 4]
        [--size 224] [--repeats 5] [--memory-repeats 3] [--threads 2] [--profile] [--json]
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
import warnings
from collections.abc import Callable

import torch
from memory import reset_peak, status_kib, tensor_growth

from esq import load_plugins
from esq.builtin.training import NO_QUANTIZER
from esq.builtin.training.module import SegmentationModule

SIDES = ("squeeze", "baseline", "inference", "frozen")
LABELS = {
    "squeeze": "squeeze step (vq)",
    "baseline": "baseline step",
    "inference": "inference forward (logits)",
    "frozen": "frozen forward (embed)",
}
QUANTIZER_OPTIONS = {"codebook_size": 512, "bottleneck_dim": 64}
NUM_CLASSES = 3
SPEED_GOAL, SHARE_GOAL, MEMORY_GOAL = 1.25, 0.25, 1.30

# outside a Trainer, LightningModule.log warns on every call and returns
warnings.filterwarnings("ignore", message="You are trying to `self.log")


def batch(size: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (size, 3, side, side), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, NUM_CLASSES, (size, side, side), generator=generator)


PLUGINS = load_plugins()


def build_module(backbone: str, quantizer: str) -> SegmentationModule:
    torch.manual_seed(0)  # the same backbone and head weights on every side
    options = {"quantizer_options": QUANTIZER_OPTIONS} if quantizer != NO_QUANTIZER else {}
    return SegmentationModule(
        plugins=PLUGINS,
        backbone=backbone,
        backbone_options={"weights": "none"},
        num_classes=NUM_CLASSES,
        quantizer=quantizer,
        lr=1e-4,
        **options,
    )


def training_step(module: SegmentationModule, images: torch.Tensor, masks: torch.Tensor) -> Callable[[], None]:
    module.train()
    optimizer = module.configure_optimizers()

    def step() -> None:
        optimizer.zero_grad()
        loss = module.training_step((images, masks), 0)
        loss.backward()
        optimizer.step()

    return step


def forward(backbone: torch.nn.Module, images: torch.Tensor, embed_only: bool) -> Callable[[], None]:
    backbone.eval()
    run = backbone.embed if embed_only else backbone

    def infer() -> None:
        with torch.inference_mode():
            run(backbone.preprocess(images))

    return infer


def build_side(side: str, backbone: str, images: torch.Tensor, masks: torch.Tensor) -> Callable[[], None]:
    if side in ("squeeze", "baseline"):
        return training_step(build_module(backbone, "vq" if side == "squeeze" else NO_QUANTIZER), images, masks)
    return forward(build_module(backbone, NO_QUANTIZER).model.backbone, images, embed_only=side == "frozen")


def check_same_backbone(backbone: str) -> None:
    """Squeeze and baseline start from identical backbone and head weights."""
    squeeze, baseline = (build_module(backbone, quantizer).model.backbone for quantizer in ("vq", NO_QUANTIZER))
    theirs = baseline.state_dict()
    for name, tensor in squeeze.state_dict().items():
        if not torch.equal(tensor, theirs[name]):
            raise SystemExit(
                f"{backbone}: squeeze and baseline backbones differ at {name}; the sides would not compare"
            )


def seconds(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def time_sides(arguments: argparse.Namespace, images: torch.Tensor, masks: torch.Tensor) -> dict[str, list[float]]:
    runs = {side: build_side(side, arguments.backbone, images, masks) for side in SIDES}
    for run in runs.values():  # warm-up, untimed
        run()
    times: dict[str, list[float]] = {side: [] for side in SIDES}
    for repeat in range(arguments.repeats):
        shift = repeat % len(SIDES)  # rotate the order, so no side always goes first
        for side in SIDES[shift:] + SIDES[:shift]:
            times[side].append(seconds(runs[side]))
        log(f"  repeat {repeat + 1}: " + ", ".join(f"{side} {times[side][-1]:.2f} s" for side in SIDES))
    return times


def measure_memory(arguments: argparse.Namespace, profile_tensors: bool) -> dict[str, int | bool]:
    """Build one side, run it once, then measure a second run: peak RSS and growth in KiB."""
    images, masks = batch(arguments.batch, arguments.size)
    run = build_side(arguments.measure_memory, arguments.backbone, images, masks)
    run()  # warm-up: optimizer state, first gradients, allocator pools
    try:  # hand freed heap back, so the resident set before the run is what is live
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    peak_before, before = status_kib("VmHWM"), status_kib("VmRSS")
    was_reset = reset_peak()
    run()
    peak_run = status_kib("VmHWM")
    return {
        "resident_before": before,
        "peak": max(peak_before, peak_run),
        "growth": peak_run - before,
        "exact": was_reset or peak_run > peak_before,
        "tensor_growth": tensor_growth(run) if profile_tensors else -1,
    }


def memory_in_subprocess(side: str, arguments: argparse.Namespace, profile_tensors: bool) -> dict[str, int | bool]:
    command = [sys.executable, os.path.abspath(__file__), "--measure-memory", side]
    for option in ("backbone", "batch", "size", "threads"):
        command += [f"--{option}", str(getattr(arguments, option))]
    done = subprocess.run(command + (["--profile-tensors"] if profile_tensors else []), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"memory run {side} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_of(side: str, arguments: argparse.Namespace) -> dict[str, float | list[int]]:
    """Medians over fresh processes (RSS varies with the heap's layout); the tensor figure,
    deterministic, from the first."""
    runs = [memory_in_subprocess(side, arguments, index == 0) for index in range(arguments.memory_repeats)]
    if not all(run["exact"] for run in runs):
        log(f"  note: {side}: the peak could not be reset; the growth is a lower bound")
    growths = [int(run["growth"]) for run in runs]
    log(f"  memory {side}: +MiB RSS " + ", ".join(f"{growth / 1024:.0f}" for growth in growths))
    return {
        "peak_kib": statistics.median(int(run["peak"]) for run in runs),
        "growth_kib": statistics.median(growths),
        "growths_kib": growths,
        "tensor_growth_kib": int(runs[0]["tensor_growth"]),
    }


def profile_steps(arguments: argparse.Namespace, images: torch.Tensor, masks: torch.Tensor) -> None:
    """torch.profiler's top operators (self CPU time) of one squeeze and one baseline step."""
    from torch.profiler import ProfilerActivity, profile

    for side in ("squeeze", "baseline"):
        run = build_side(side, arguments.backbone, images, masks)
        run()
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            run()
        print(f"\n{LABELS[side]}: top operators by self CPU time")
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def ratio(ours: float, theirs: float) -> float | None:
    return ours / theirs if ours > 0 and theirs > 0 else None


def ratio_text(value: float | None) -> str:
    return f"{value:.3f}x" if value is not None else "n/a"


def verdict(value: float | None, goal: float) -> str:
    return "n/a" if value is None else ("met" if value <= goal else "NOT met")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="deeplabv3_resnet50", help="a segmentation backbone")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-repeats", type=int, default=3, help="fresh processes per side for the RSS")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also print the top operators of each step")
    parser.add_argument("--json", action="store_true", help="print only the JSON document")
    parser.add_argument("--measure-memory", choices=SIDES, help=argparse.SUPPRESS)  # in the subprocess
    parser.add_argument("--profile-tensors", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    if arguments.measure_memory:
        print(json.dumps(measure_memory(arguments, arguments.profile_tensors)))
        return

    log(
        f"{arguments.backbone}, batch {arguments.batch}×3×{arguments.size}×{arguments.size}, vq {QUANTIZER_OPTIONS}, "
        f"{arguments.repeats} timing repeats, {arguments.memory_repeats} memory processes per side, "
        f"{arguments.threads} threads, torch {torch.__version__}"
    )
    memory = {side: memory_of(side, arguments) for side in SIDES}  # first, while this process is small
    check_same_backbone(arguments.backbone)
    images, masks = batch(arguments.batch, arguments.size)
    times = time_sides(arguments, images, masks)
    milliseconds = {side: 1000 * statistics.median(values) for side, values in times.items()}

    speed_ratio = milliseconds["squeeze"] / milliseconds["baseline"]
    # the same repeat's two steps share the machine's load, so their ratio is steadier than the medians'
    paired_ratio = statistics.median(s / b for s, b in zip(times["squeeze"], times["baseline"], strict=True))
    share = (milliseconds["squeeze"] - milliseconds["baseline"]) / milliseconds["frozen"]
    memory_ratios = {
        key: ratio(memory["squeeze"][key], memory["inference"][key])
        for key in ("peak_kib", "growth_kib", "tensor_growth_kib")
    }
    report = {
        "machine": {"threads": arguments.threads, "cpu_count": os.cpu_count(), "torch": torch.__version__},
        "setup": {
            "backbone": arguments.backbone,
            "batch": arguments.batch,
            "size": arguments.size,
            "quantizer": {"vq": QUANTIZER_OPTIONS},
            "repeats": arguments.repeats,
            "memory_repeats": arguments.memory_repeats,
        },
        "milliseconds": milliseconds,
        "all_seconds": times,
        "memory": memory,
        "ratios": {
            "squeeze_over_baseline": speed_ratio,
            "squeeze_over_baseline_paired": paired_ratio,
            "quantizer_share_of_frozen_forward": share,
            "squeeze_over_inference_memory": memory_ratios,
        },
        "goals": {
            "squeeze_over_baseline": {"goal": SPEED_GOAL, "met": speed_ratio <= SPEED_GOAL},
            "quantizer_share_of_frozen_forward": {"goal": SHARE_GOAL, "met": share <= SHARE_GOAL},
            "squeeze_over_inference_memory": {
                "goal": MEMORY_GOAL,
                "met": {key: value is not None and value <= MEMORY_GOAL for key, value in memory_ratios.items()},
            },
        },
    }
    if arguments.json:
        print(json.dumps(report, indent=2))
        return

    mib = 1024
    print(
        f"{'side':<28}{'ms':>9}{'×baseline':>11}{'×frozen':>9}{'peak RSS':>10}{'run RSS+':>10}{'×infer':>9}"
        f"{'tensors+':>10}{'×infer':>9}"
    )
    print(f"{'':<57}{'MiB':>10}{'MiB':>10}{'':>9}{'MiB':>10}")
    for side in SIDES:
        row = f"{LABELS[side]:<28}{milliseconds[side]:>9.0f}"
        row += f"{milliseconds[side] / milliseconds['baseline']:>10.3f}x"
        row += f"{milliseconds[side] / milliseconds['frozen']:>8.2f}x"
        row += f"{memory[side]['peak_kib'] / mib:>10.0f}"
        for key in ("growth_kib", "tensor_growth_kib"):
            figure = memory[side][key]
            row += f"{figure / mib:>10.0f}" if figure >= 0 else f"{'n/a':>10}"
            row += f"{ratio_text(ratio(figure, memory['inference'][key])):>9}"
        print(row)
    print()
    print(f"squeeze / baseline step: {speed_ratio:.3f}x (goal ≤ {SPEED_GOAL:.2f}x: {verdict(speed_ratio, SPEED_GOAL)})")
    print(f"  median of each repeat's squeeze / baseline: {paired_ratio:.3f}x")
    print(
        f"quantizer's share, (squeeze − baseline) / frozen forward: {share:.3f} "
        f"(goal ≤ {SHARE_GOAL:.2f}: {verdict(share, SHARE_GOAL)})"
    )
    for key, what in (("growth_kib", "RSS growth"), ("tensor_growth_kib", "live tensors"), ("peak_kib", "peak RSS")):
        value = memory_ratios[key]
        print(
            f"squeeze step / inference forward, {what}: {ratio_text(value)} "
            f"(goal ≤ {MEMORY_GOAL:.2f}x: {verdict(value, MEMORY_GOAL)})"
        )
    print()
    print(json.dumps(report, indent=2))
    if arguments.profile:
        profile_steps(arguments, images, masks)


if __name__ == "__main__":
    main()
