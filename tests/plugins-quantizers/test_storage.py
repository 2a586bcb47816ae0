"""pack/unpack: codes round-trip through a file whose size matches the computed ratio."""

from __future__ import annotations

import json
import math

import pytest
import torch

import esq
from esq import DataError
from esq_quantizers import pack, unpack
from esq_quantizers.storage import MAGIC

CASES = [
    ("vq", {"codebook_size": 512}),
    ("fsq", {"levels": [8, 5, 5, 5]}),
    ("lfq", {"codebook_size": 2**12}),
    ("rvq", {"num_quantizers": 4, "codebook_size": 256}),
    ("rvq", {"num_quantizers": 3, "codebook_size": 100}),
    ("rvq", {"num_quantizers": 9, "codebook_size": 256}),
    ("residual_fsq", {"num_quantizers": 2, "levels": [8, 5, 5, 5]}),
    ("simvq", {"codebook_size": 512}),
    ("identity", {}),
]


def header_and_payload(path):
    data = path.read_bytes()
    size = int.from_bytes(data[len(MAGIC) : len(MAGIC) + 4], "little")
    start = len(MAGIC) + 4 + size
    return json.loads(data[len(MAGIC) + 4 : start]), data[start:]


@pytest.mark.parametrize(("name", "options"), CASES)
@pytest.mark.parametrize("layout", ["tokens", "maps"])
def test_pack_unpack_round_trip_and_file_size(tmp_path, name, options, layout):
    torch.manual_seed(0)
    quantizer = esq.registry("quantizers").create(name, input_dim=32, **options).eval()
    x = torch.randn(3, 50, 32) if layout == "tokens" else torch.randn(3, 32, 5, 10)
    codes = quantizer.encode(x)
    path = pack(codes, quantizer, tmp_path / "codes.esq")
    packed = unpack(path)
    assert torch.equal(packed.codes, codes) and packed.quantizer == name
    assert torch.equal(quantizer.decode(packed.codes), quantizer(x).quantized)
    assert esq.registry("quantizers").create(packed.quantizer, **packed.options).options == quantizer.options
    header, payload = header_and_payload(path)
    vectors = 150
    assert header["bits_per_vector"] == math.ceil(quantizer.bits_per_vector - 1e-9)
    assert len(payload) == math.ceil(vectors * header["bits_per_vector"] / 8)
    float_bytes = vectors * 32 * 4
    measured_ratio = float_bytes / len(payload)
    assert measured_ratio == pytest.approx(quantizer.compression_ratio(32), rel=0.15)


def test_large_residual_stacks_store_each_code_separately(tmp_path):
    quantizer = esq.registry("quantizers").create("rvq", input_dim=8, num_quantizers=9, codebook_size=256)
    codes = quantizer.encode(torch.randn(1, 10, 8))
    header, _ = header_and_payload(pack(codes, quantizer, tmp_path / "c.esq"))
    assert header["layout"] == "per_code" and header["bits_per_vector"] == 72


def test_pack_rejects_codes_out_of_range(tmp_path):
    quantizer = esq.registry("quantizers").create("vq", input_dim=8, codebook_size=16)
    with pytest.raises(DataError, match=r"codes must lie in \[0, 16\)"):
        pack(torch.tensor([[3, 16]]), quantizer, tmp_path / "c.esq")
    assert not (tmp_path / "c.esq").exists()


def test_unpack_rejects_other_files(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"hello")
    with pytest.raises(DataError, match="not an esq codes file"):
        unpack(path)
    with pytest.raises(DataError, match="no such codes file"):
        unpack(tmp_path / "missing.esq")


def test_unpack_rejects_truncated_and_corrupt_files(tmp_path):
    quantizer = esq.registry("quantizers").create("vq", input_dim=8, codebook_size=16)
    path = pack(quantizer.encode(torch.randn(1, 10, 8)), quantizer, tmp_path / "c.esq")
    data = path.read_bytes()
    path.write_bytes(data[:-2])
    with pytest.raises(DataError, match="truncated or corrupt: 3 bytes of codes, expected 5"):
        unpack(path)
    path.write_bytes(data.replace(b'"shape"', b'"shapo"'))
    with pytest.raises(DataError, match="the header is corrupt"):
        unpack(path)


def test_empty_code_tensors_round_trip(tmp_path):
    quantizer = esq.registry("quantizers").create("rvq", input_dim=8, num_quantizers=2, codebook_size=16)
    codes = torch.zeros(0, 5, 2, dtype=torch.long)
    assert torch.equal(unpack(pack(codes, quantizer, tmp_path / "e.esq")).codes, codes)


@pytest.mark.parametrize(
    ("name", "codes", "message"),
    [
        ("vq", torch.tensor([[3.7, 1.0]]), "codes must be integers"),
        ("rvq", torch.zeros(1, 4, 2, dtype=torch.long), "gives 3 codes per vector"),
        ("identity", torch.zeros(1, 4, 5), "float features of width 8"),
    ],
)
def test_pack_rejects_codes_that_did_not_come_from_the_quantizer(tmp_path, name, codes, message):
    options = {"num_quantizers": 3, "codebook_size": 16} if name == "rvq" else {}
    quantizer = esq.registry("quantizers").create(name, input_dim=8, **options)
    with pytest.raises(DataError, match=message):
        pack(codes, quantizer, tmp_path / "c.esq")


def test_pack_rejects_a_foreign_quantizer(tmp_path):
    with pytest.raises(DataError, match="is not an esq-quantizers quantizer"):
        pack(torch.zeros(1, 2, dtype=torch.long), object(), tmp_path / "c.esq")


@pytest.mark.parametrize("name", esq.registry("quantizers").names())
def test_every_quantizer_spec_packs_its_codes_as_esq_quantizers_pack_does(name, tmp_path):
    spec = esq.registry("quantizers").spec(name)
    quantizer = esq.registry("quantizers").create(name, input_dim=8)
    codes = quantizer.encode(torch.randn(1, 6, 8))
    path = spec.pack(codes, quantizer, tmp_path / "codes.esq")
    assert path.read_bytes() == pack(codes, quantizer, tmp_path / "direct.esq").read_bytes()
    assert torch.equal(unpack(path).codes, codes)
