"""esq.load_torch_file: every loader's way to read a torch file (checksums, weights_only, one line)."""

from __future__ import annotations

import struct

import pytest
import torch

from esq import CheckpointError, DataError, load_torch_file, verify_torch_file


def flip_a_byte_of(path, value: float) -> None:
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<f", value))
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_torch_file_is_read_back(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"weight": torch.arange(4.0)}, path)
    assert torch.equal(load_torch_file(path, mmap=True)["weight"], torch.arange(4.0))


def test_a_flipped_byte_is_refused_naming_the_file_and_member(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"weight": torch.arange(1000.0)}, path)
    flip_a_byte_of(path, 500.0)
    with pytest.raises(CheckpointError, match=rf"{path}: damaged: the checksum \(CRC-32\) of its member .*/data/0"):
        load_torch_file(path)


class Payload:
    pass


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            lambda path: torch.save({"object": Payload()}, path),
            r"it holds a pickled Python object \(GLOBAL \S+Payload\)",
        ),
        (lambda path: path.write_text("epoch,loss\n1,0.5\n"), "torch cannot read it .*torch.save did not write it"),
        (lambda path: path.write_bytes(b""), "torch cannot read it"),
    ],
)
def test_a_foreign_or_unsafe_file_is_one_line_of_the_error_asked_for(tmp_path, content, message):
    path = tmp_path / "features.pt"
    content(path)
    with pytest.raises(DataError, match=f"features_a {path}: {message}") as caught:
        load_torch_file(path, f"features_a {path}", mmap=True, error=DataError)
    assert "\n" not in str(caught.value) and "weights_only=False" not in str(caught.value)


def test_a_missing_file_and_a_legacy_file(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.pt: no such file"):
        load_torch_file(tmp_path / "nothing.pt")
    legacy = tmp_path / "legacy.pt"
    torch.save({"weight": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    verify_torch_file(legacy)  # no checksum to check: passes
    assert torch.equal(load_torch_file(legacy, mmap=True)["weight"], torch.ones(2))
