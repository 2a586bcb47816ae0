"""`esq weights [BACKBONE]`: every file weights="default" reads, where it goes, whether it is there."""

import json

import torch
from click.testing import CliRunner

from esq.cli.main import make_cli


def run(*arguments):
    return CliRunner().invoke(make_cli(), ["weights", *arguments])


def test_lists_every_backbone_with_its_file_and_status(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    result = run()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    hub = tmp_path / "hub" / "checkpoints"
    assert any(line.split() == ["resnet50", "missing", str(hub / "resnet50-11ad3fa6.pth")] for line in lines)
    assert "download: https://download.pytorch.org/models/resnet50-11ad3fa6.pth" in result.output
    assert any(line.split() == ["tiny_cnn", "random", "init", "only"] for line in lines)
    assert "dinov2_vitb14" in result.output and "sd_vae" in result.output


def test_one_backbone_as_json_and_check(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    result = run("vgg19", "--json", "--check")
    assert result.exit_code == 1
    (row,) = json.loads(result.output)
    assert row["backbone"] == "vgg19" and row["status"] == "missing"
    path = tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert row["file"] == str(path)
    path.parent.mkdir(parents=True)
    torch.save({}, path)
    result = run("vgg19", "--check")
    assert result.exit_code == 0 and "present" in result.output and "download:" not in result.output


def test_an_unknown_backbone_gets_one_line():
    result = run("resnet5O")
    assert result.exit_code != 0
    assert "unknown backbone 'resnet5O' (did you mean 'resnet50'?)" in result.output
    assert "Traceback" not in result.output
