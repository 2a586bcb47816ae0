"""Per training step: each esq quantizer against the bare vector-quantize-pytorch module.

Issue 3's measure: tokens (4, 196, 768), a 64-d bottleneck, the same settings on both sides;
the bare side is Linear(768→64) → library module → Linear(64→768), the computation esq's wrapper
performs, so the ratio is the wrapper's own overhead (layout handling, input checks, usage
statistics). One step: forward, loss (quantizer loss + reconstruction MSE), backward, Adam step.
Both sides alternate within each repeat; medians are reported. Goal: ratio ≤ 1.10×.

    .venv/bin/python benchmarks/quantizer_overhead.py [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from vector_quantize_pytorch import FSQ, LFQ, ResidualFSQ, ResidualVQ, SimVQ, VectorQuantize

import esq

SHAPE, BOTTLENECK = (4, 196, 768), 64
VQ_SETTINGS = {"decay": 0.99, "commitment_weight": 0.25, "threshold_ema_dead_code": 2}
CASES: dict[str, tuple[dict, Callable[[], nn.Module]]] = {
    "vq": ({"codebook_size": 512}, lambda: VectorQuantize(dim=BOTTLENECK, codebook_size=512, **VQ_SETTINGS)),
    "fsq": ({"levels": [8, 5, 5, 5]}, lambda: FSQ(levels=[8, 5, 5, 5], dim=BOTTLENECK)),
    "lfq": ({"codebook_size": 1024}, lambda: LFQ(dim=BOTTLENECK, codebook_size=1024, entropy_loss_weight=0.1)),
    "rvq": (
        {"num_quantizers": 4, "codebook_size": 256},
        lambda: ResidualVQ(dim=BOTTLENECK, num_quantizers=4, codebook_size=256, **VQ_SETTINGS),
    ),
    "residual_fsq": (
        {"num_quantizers": 4, "levels": [8, 5, 5, 5]},
        lambda: ResidualFSQ(levels=[8, 5, 5, 5], num_quantizers=4, dim=BOTTLENECK),
    ),
    "simvq": ({"codebook_size": 512}, lambda: SimVQ(dim=BOTTLENECK, codebook_size=512, commitment_weight=1.0)),
}


class Bare(nn.Module):
    """The library module between the same two projections, no wrapper."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.project_in, self.module, self.project_out = nn.Linear(768, BOTTLENECK), module, nn.Linear(BOTTLENECK, 768)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.module(self.project_in(x))
        loss = out[2].sum() if len(out) > 2 else x.new_zeros(())
        return self.project_out(out[0]), loss


def same_weights(ours: nn.Module, bare: Bare, x: torch.Tensor) -> None:
    """Give the bare side esq's weights, and check both compute the same step."""
    bare.project_in.load_state_dict(ours.project_in.state_dict())
    bare.project_out.load_state_dict(ours.project_out.state_dict())
    bare.module.load_state_dict(ours.library.state_dict())
    with torch.no_grad():
        ours.eval(), bare.eval()
        expected = bare(x)[0]
        if not torch.allclose(ours(x).quantized, expected, atol=1e-5):
            raise SystemExit(
                f"{type(ours).__name__}: esq and the bare module disagree; the timing would compare unlike work"
            )
        ours.train(), bare.train()


def esq_step(model: nn.Module) -> Callable[[torch.Tensor], None]:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(x: torch.Tensor) -> None:
        output = model(x)
        loss = output.loss + nn.functional.mse_loss(output.quantized, x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return step


def bare_step(model: nn.Module) -> Callable[[torch.Tensor], None]:
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step(x: torch.Tensor) -> None:
        quantized, quantizer_loss = model(x)
        loss = quantizer_loss + nn.functional.mse_loss(quantized, x)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return step


def seconds(step: Callable[[torch.Tensor], None], x: torch.Tensor) -> float:
    started = time.perf_counter()
    step(x)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    x = torch.randn(*SHAPE, generator=torch.Generator().manual_seed(0))
    quantizers = esq.registry("quantizers")
    print(f"tokens {SHAPE}, bottleneck {BOTTLENECK}, {arguments.repeats} steps each, {arguments.threads} threads")
    print(f"{'quantizer':<13}{'bits/vector':>12}{'ratio':>10}{'esq ms/step':>13}{'bare ms/step':>14}{'esq/bare':>10}")
    for name, (options, build_bare) in CASES.items():
        torch.manual_seed(0)
        ours = quantizers.create(name, input_dim=768, bottleneck_dim=BOTTLENECK, **options).train()
        bare = Bare(build_bare()).train()
        same_weights(ours, bare, x)
        steps = {"esq": esq_step(ours), "bare": bare_step(bare)}
        for step in steps.values():  # warm-up, untimed
            step(x)
        times: dict[str, list[float]] = {"esq": [], "bare": []}
        for repeat in range(arguments.repeats):
            order = ("esq", "bare") if repeat % 2 == 0 else ("bare", "esq")  # neither side always goes first
            for side in order:
                times[side].append(seconds(steps[side], x))
        esq_ms, bare_ms = (1000 * statistics.median(times[side]) for side in ("esq", "bare"))
        print(
            f"{name:<13}{ours.bits_per_vector:>12.2f}{ours.compression_ratio(768):>9.1f}x"
            f"{esq_ms:>13.2f}{bare_ms:>14.2f}{esq_ms / bare_ms:>9.3f}x"
        )


if __name__ == "__main__":
    main()
