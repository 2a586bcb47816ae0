"""``esq.fit_quantizer``: calibration first, gradient steps only for trainable parameters."""

from __future__ import annotations

import pytest

import esq

torch = pytest.importorskip("torch")


class Calibrated(torch.nn.Module):
    """No trainable parameters: a centre taken from the features by ``calibrate``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.register_buffer("centre", torch.zeros(2))

    def calibrate(self, x):
        self.calls.append("calibrate")
        self.centre.copy_(x.reshape(-1, x.shape[-1]).mean(0))

    def forward(self, x):
        self.calls.append("forward")
        return esq.QuantizerOutput(quantized=x - self.centre, codes=None, loss=torch.zeros(()))


class Learned(Calibrated):
    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        self.calls.append("forward")
        return esq.QuantizerOutput(quantized=x * self.weight, codes=None, loss=torch.zeros(()))


def test_a_quantizer_without_trainable_parameters_is_calibrated_and_takes_no_gradient_step():
    features = torch.tensor([[[1.0, 3.0], [3.0, 5.0]]])
    quantizer = esq.fit_quantizer(Calibrated(), features, steps=5, learning_rate=0.1)
    assert quantizer.calls == ["calibrate"] and quantizer.centre.tolist() == [2.0, 4.0]
    assert not quantizer.training


def test_calibration_comes_before_the_gradient_steps_which_show_progress():
    shown = []

    def progress(items, description, total=None):
        shown.append((description, total))
        return items

    quantizer = esq.fit_quantizer(Learned(), torch.ones(1, 4, 2), 3, 0.1, progress=progress, description="vq")
    assert quantizer.calls == ["calibrate", "forward", "forward", "forward"]
    assert shown == [("vq", 3)] and float(quantizer.weight.detach()) > 0


def test_a_negative_step_count_is_refused_naming_the_option():
    with pytest.raises(esq.ConfigError, match="steps"):
        esq.fit_quantizer(Learned(), torch.ones(1, 4, 2), -1, 0.1)
