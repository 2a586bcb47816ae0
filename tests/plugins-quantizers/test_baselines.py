"""esq-quantizers' baselines: float16, scalar and binary (bits, packing, calibration, search)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import esq
from esq import ConfigError, DataError
from esq.testing import check_quantizer
from esq_quantizers import pack, unpack

BASELINES = {
    "float16": {},
    "scalar": {"bits": 4},
    "binary": {"rotate": True},
}


def create(name, input_dim=16, **options):
    return esq.registry("quantizers").create(name, input_dim=input_dim, **options)


def features(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_each_baseline_passes_the_conformance_checks_and_has_no_parameters(name):
    check_quantizer(esq.registry("quantizers").spec(name), input_dim=16, **BASELINES[name])
    quantizer = create(name, **BASELINES[name]).train()
    assert not list(quantizer.parameters())
    assert quantizer(features(2, 5, 16)).loss.item() == 0.0


@pytest.mark.parametrize(
    ("name", "options", "per_dim"), [("float16", {}, 16), ("scalar", {"bits": 2}, 2), ("binary", {}, 1)]
)
def test_packed_file_holds_bits_per_vector_and_round_trips(tmp_path, name, options, per_dim):
    quantizer = create(name, input_dim=24, **options)
    x = features(1, 100, 24)
    if hasattr(quantizer, "calibrate"):
        quantizer.calibrate(x)
    codes = quantizer.encode(x)
    path = pack(codes, quantizer, tmp_path / "codes.esq")
    assert quantizer.bits_per_vector == per_dim * 24
    packed = unpack(path)
    assert torch.equal(packed.codes, codes) and packed.bits_per_vector == per_dim * 24
    from esq_quantizers.storage import MAGIC

    data = path.read_bytes()
    header = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
    assert len(data) - len(MAGIC) - 4 - header == 100 * per_dim * 24 // 8


def test_scalar_int8_matches_a_numpy_restatement():
    x = features(500, 32).numpy()
    quantizer = create("scalar", input_dim=32, bits=8).calibrate(torch.from_numpy(x))
    low, high = x.min(axis=0), x.max(axis=0)
    width = (high - low) / 256
    codes = np.clip(np.floor((x - low) / width), 0, 255)
    expected = low + (codes + 0.5) * width
    got = quantizer.eval()(torch.from_numpy(x)[None]).quantized[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - x).max() <= width.max() / 2 + 1e-5


def test_binary_hamming_search_equals_brute_force():
    quantizer = create("binary", input_dim=70).calibrate(features(300, 70))
    gallery = quantizer.encode(features(1, 300, 70, seed=1))
    queries = features(40, 70, seed=2)
    scores, ids = quantizer.search(gallery, queries, k=25)
    query_bits = quantizer.encode(queries[None])[0].numpy()
    distance = (query_bits[:, None, :] != gallery[0].numpy()[None]).sum(axis=2)
    order = np.lexsort((np.broadcast_to(np.arange(300), distance.shape), distance), axis=1)[:, :25]
    assert np.array_equal(ids.numpy(), order)
    assert np.array_equal(scores.numpy(), 70 - np.take_along_axis(distance, order, axis=1))


def recall_at_10(found, gold):
    return float((found[:, :10] == gold[:, None]).any(axis=1).mean())


def test_retrieval_on_planted_neighbours_keeps_most_of_float_recall():
    dim, count = 128, 2000
    gallery = torch.nn.functional.normalize(features(count, dim, seed=3), dim=1)
    gold = torch.arange(0, count, 10)
    queries = torch.nn.functional.normalize(gallery[gold] + 0.9 * features(len(gold), dim, seed=4) / dim**0.5, dim=1)
    exact = esq.exact_top_k(queries, gallery, k=10)[1].numpy() if hasattr(esq, "exact_top_k") else None
    if exact is None:
        exact = (queries @ gallery.T).topk(10, dim=1).indices.numpy()
    float_recall = recall_at_10(exact, gold.numpy())
    scalar = create("scalar", input_dim=dim, bits=8).calibrate(gallery).eval()
    decoded = scalar.decode(scalar.encode(gallery[None]))[0]
    scalar_recall = recall_at_10((queries @ decoded.T).topk(10, dim=1).indices.numpy(), gold.numpy())
    binary = create("binary", input_dim=dim).calibrate(gallery)
    binary_recall = recall_at_10(binary.search(binary.encode(gallery[None]), queries, k=10)[1].numpy(), gold.numpy())
    assert scalar_recall >= 0.95 * float_recall
    assert binary_recall >= 0.8 * float_recall


def test_a_first_training_batch_calibrates_and_eval_never_does():
    quantizer = create("scalar", input_dim=8).eval()
    quantizer(features(1, 20, 8) * 10)
    assert not quantizer.calibrated
    quantizer.train()(features(1, 20, 8) * 10)
    assert quantizer.calibrated and float(quantizer.width_.max()) > 2.0 / 256


BAD = [
    (lambda: create("scalar", bits=3), ConfigError, "scalar: bits must be one of 8, 4, 2, got 3"),
    (lambda: create("scalar", percentile=99.0), ConfigError, "percentile is given, but calibration is 'minmax'"),
    (lambda: create("scalar", calibration="percentile", percentile=20), ConfigError, "scalar: percentile must be"),
    (lambda: create("binary", rotate="yes"), ConfigError, "binary: rotate must be true or false"),
    (lambda: create("float16").encode(torch.full((1, 2, 16), 1e6)), DataError, "beyond float16's largest value"),
    (
        lambda: create("binary").search(torch.zeros(1, 5, 16, dtype=torch.long), features(2, 16), k=6),
        ConfigError,
        "binary: k must be",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), BAD)
def test_bad_baseline_input_is_one_clear_error(call, error, message):
    with pytest.raises(error, match=None) as raised:
        call()
    assert message in str(raised.value)
