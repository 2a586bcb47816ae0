"""``check_metric``: the protocol of similarity and distribution metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from esq.components import Metric, MetricResult
from esq.specs import MetricSpec
from esq.testing.common import build, ensure, expect_rejected, rebuild


def _inputs(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, close, far)``: ``close`` resembles ``x`` (same samples, or same distribution)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 8))
    if kind == "similarity":
        return x, x + 0.1 * rng.normal(size=x.shape), rng.normal(size=x.shape)
    return x, rng.normal(size=x.shape), rng.normal(loc=2.0, size=x.shape)


def _value(spec: MetricSpec, metric: Any, x: np.ndarray, y: np.ndarray) -> float:
    result = metric(x, y)
    ensure(isinstance(result, MetricResult), f"{spec.name}: returned {type(result).__name__}, expected MetricResult")
    ensure(isinstance(result.value, float), f"{spec.name}: value must be a float, got {type(result.value).__name__}")
    ensure(math.isfinite(result.value), f"{spec.name}: value {result.value} is not finite")
    low, high = spec.range
    slack = 1e-9 * max(1.0, abs(result.value))
    ensure(low - slack <= result.value <= high + slack, f"{spec.name}: value {result.value} outside range {spec.range}")
    return result.value


def check_metric(spec: MetricSpec, **options: Any) -> None:
    """Check a metric built as ``spec.factory(**options)``.

    Values are finite floats in ``spec.range``, repeatable, unchanged by a rebuild from
    ``metric.options``; a close input scores better than a far one in the direction of
    ``higher_is_better``; inputs are not modified; 1-D, non-finite and mismatched inputs are
    rejected with an ``EsqError``.
    """
    metric = build(spec, options, Metric)
    x, close, far = _inputs(spec.kind)
    copies = (x.copy(), close.copy())
    value = _value(spec, metric, x, close)
    ensure(np.array_equal(x, copies[0]) and np.array_equal(close, copies[1]), f"{spec.name}: modified its input")
    ensure(_value(spec, metric, x, close) == value, f"{spec.name}: two calls on the same input differ")
    ensure(
        _value(spec, rebuild(spec, metric, Metric), x, close) == value,
        (f"{spec.name}: a metric rebuilt from its `options` gives another value"),
    )
    far_value = _value(spec, metric, x, far)
    better = value > far_value if spec.higher_is_better else value < far_value
    ensure(
        better,
        (
            f"{spec.name}: a close input scored {value}, a far one {far_value}; "
            f"that contradicts higher_is_better={spec.higher_is_better}"
        ),
    )
    bad_nan = close.copy()
    bad_nan[3, 2] = np.nan
    expect_rejected(spec.name, "a 1-D input", lambda: metric(x[:, 0], close))
    expect_rejected(spec.name, "an input with NaN", lambda: metric(x, bad_nan))
    if spec.kind == "similarity":
        expect_rejected(spec.name, "inputs with different numbers of rows", lambda: metric(x, close[:-1]))
    else:
        expect_rejected(spec.name, "inputs with different numbers of columns", lambda: metric(x, close[:, :-1]))
