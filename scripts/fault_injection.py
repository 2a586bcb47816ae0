"""Fault injection: kill esq with SIGKILL at each atomic write and at each rename of a command,
then start the command again, and check that nothing was lost and nothing was left behind.

For each scenario the command runs once to count its events (a temporary file made for an atomic
write, an ``os.replace``/``os.rename``); then, for each event N, a fresh copy of the scenario's
starting state is killed just before event N, the command is started again, and the tree is
checked: no temporary file is left, every JSON/TOML/checkpoint file in it is whole, and the
scenario's own check holds (its result is complete). Signals and concurrency get their own
scenarios (SIGTERM mid-epoch and then ``--resume``; two cache builds at once; ``cache rm``
during a build).

    .venv/bin/python scripts/fault_injection.py [--only NAME ...] [--workdir DIR]

Prints one line per case and a table (scenario, cases, clean); exits 1 if any case was not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy

# Runs in the child before esq: count events, SIGKILL itself just before event number KILL_AT.
INJECTOR = r"""
import os, signal, sys, tempfile
kill_at, counter, events = int(os.environ["FAULT_KILL_AT"]), [0], os.environ["FAULT_EVENTS"]

def event(name, what):
    counter[0] += 1
    with open(events, "a") as handle:
        handle.write(f"{counter[0]} {name} {what}\n")
    if counter[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)

def wrap(module, name):
    original = getattr(module, name)
    def wrapped(*args, **kwargs):
        event(name, args[1] if name == "save" else args[0] if args else kwargs.get("prefix", ""))
        return original(*args, **kwargs)
    setattr(module, name, wrapped)

import torch
for module, name in ((os, "replace"), (os, "rename"), (tempfile, "mkstemp"), (torch, "save")):
    wrap(module, name)
from esq.cli.main import main
main(sys.argv[1:])
"""

TINY_TRAINING = ["--synthetic-size", "24", "--image-size", "32", "--batch-size", "8", "--epochs", "2"]


def esq_command(*args: str) -> list[str]:
    return [sys.executable, "-c", INJECTOR, *args]


def run(command: list[str], workdir: Path, kill_at: int = 0) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "FAULT_KILL_AT": str(kill_at),
        "FAULT_EVENTS": str(workdir / "events.txt"),
        "ESQ_CACHE_DIR": str(workdir / "cache"),
    }
    return subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True, timeout=600)


def whole(path: Path) -> bool:
    """A file of a kind esq writes whole can be read back whole."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".toml":
            tomllib.loads(path.read_text())
        elif path.suffix in {".ckpt", ".pt"}:
            with zipfile.ZipFile(path) as archive:
                return archive.testzip() is None
        elif path.suffix == ".npy":
            numpy.load(path, mmap_mode="r")
        return True
    except (ValueError, OSError, zipfile.BadZipFile):
        return False


def problems_in(tree: Path) -> list[str]:
    problems = [f"left behind: {path.relative_to(tree)}" for path in tree.rglob("*.tmp")]
    problems += [
        f"half-written: {path.relative_to(tree)}" for path in tree.rglob("*") if path.is_file() and not whole(path)
    ]
    return problems


@dataclass
class Scenario:
    """``command`` from a fresh workdir (``prepare`` fills it first), started again after the
    kill; ``check`` its result."""

    name: str
    command: list[str]
    check: Callable[[Path], list[str]]
    prepare: Callable[[Path], None] = lambda workdir: None


def runs_of(workdir: Path, pipeline: str) -> list[Path]:
    return sorted((workdir / "runs" / pipeline).glob("*"))


def finished_run(pipeline: str) -> Callable[[Path], list[str]]:
    def check(workdir: Path) -> list[str]:
        statuses = [
            json.loads((run / "results.json").read_text())["status"]
            for run in runs_of(workdir, pipeline)
            if (run / "results.json").exists()
        ]
        return [] if "ok" in statuses else [f"no finished {pipeline} run (statuses {statuses})"]

    return check


def cache_entries_complete(workdir: Path) -> list[str]:
    listing = subprocess.run(
        [sys.executable, "-m", "esq", "cache", "ls", "--json", "--cache-dir", str(workdir / "cache")],
        capture_output=True,
        text=True,
    )
    if listing.returncode:
        return [f"esq cache ls failed: {listing.stderr.strip()}"]
    entries = json.loads(listing.stdout)
    incomplete = [entry for entry in entries if entry.get("status", "complete") != "complete"]
    on_disk = len(list((workdir / "cache").rglob("entry.json")))
    problems = [f"incomplete cache entry: {entry}" for entry in incomplete]
    return problems + ([] if len(entries) == on_disk and entries else [f"ls shows {len(entries)}, disk has {on_disk}"])


CACHE_BUILD = [
    *("cache", "build", "--backbone", "tiny_cnn", "--images", "synthetic", "--mode", "quick"),
    *("--n-reference", "70", "--n-evaluation", "8", "--set", "image_size=64"),
    *("--set", 'degradations={blur={type="gaussian_blur", levels=[1.0, 2.0]}}'),
]

FINISHED_FIRST = "the command finished before the kill"
LMDB_BUILD = ["clip", "build-lmdb", "--datapath", "data", "--dataset", "TOY", "--splits", "valid"]


def clip_dataset_with_an_lmdb(workdir: Path) -> None:
    """A small CN-CLIP split (tests' own writer) and its LMDB: the kills fall in a rebuild, whose
    swap must leave the old or the new database."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "plugins-clip"))
    from clip_dataset import write_split
    from PIL import Image

    images = {100 + index: Image.new("RGB", (24, 24), (index * 20, 90, 160)) for index in range(12)}
    texts = [(index, f"文本{index}", [100 + index]) for index in range(12)]
    write_split(workdir / "data" / "datasets" / "TOY", "valid", images, texts)
    subprocess.run([sys.executable, "-m", "esq", *LMDB_BUILD], cwd=workdir, check=True, capture_output=True)


def lmdb_readable(workdir: Path) -> list[str]:
    from esq_clip.splits import open_split

    try:
        split = open_split(workdir / "data", "TOY", "valid", source="lmdb")
    except Exception as error:
        return [f"lmdb/valid not readable: {error}"]
    return [] if len(split.image_ids) == 12 and len(split.texts) == 12 else ["lmdb/valid incomplete"]


SCENARIOS = [
    Scenario(
        "squeeze",
        esq_command(
            "run", "squeeze", *TINY_TRAINING, "--quantizer", "vq", "--codebook-size", "16", "--output-dir", "runs"
        ),
        finished_run("squeeze"),
    ),
    Scenario("cache build", esq_command(*CACHE_BUILD), cache_entries_complete),
    Scenario("clip build-lmdb", esq_command(*LMDB_BUILD), lmdb_readable, clip_dataset_with_an_lmdb),
]


def killed(scenario: Scenario, workdir: Path, kill_at: int, kill_after: float) -> int:
    """Run the command, killed at event ``kill_at`` or after ``kill_after`` seconds; its return code."""
    if not kill_after:
        return run(scenario.command, workdir, kill_at).returncode
    environment = {**os.environ, "FAULT_KILL_AT": "0", "FAULT_EVENTS": str(workdir / "events.txt")}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    process = subprocess.Popen(scenario.command, cwd=workdir, env=environment, **quiet)
    time.sleep(kill_after)
    process.kill()
    return process.wait()


def one_case(scenario: Scenario, root: Path, kill_at: int = 0, kill_after: float = 0.0) -> list[str]:
    workdir = root / f"{scenario.name.replace(' ', '-')}-{kill_at}-{kill_after:.2f}"
    workdir.mkdir()
    scenario.prepare(workdir)
    returncode = killed(scenario, workdir, kill_at, kill_after)
    if returncode != -signal.SIGKILL:
        return [FINISHED_FIRST] if kill_after and returncode == 0 else [f"was not killed (rc {returncode})"]
    again = run(scenario.command, workdir)
    if again.returncode != 0:
        return [f"start after the kill failed (rc {again.returncode}): {again.stderr.strip()[-300:]}"]
    (workdir / "events.txt").unlink(missing_ok=True)
    return problems_in(workdir) + scenario.check(workdir)


def count_events(scenario: Scenario, root: Path) -> tuple[int, float]:
    """How many events the command has, and how long it runs."""
    workdir = root / f"{scenario.name.replace(' ', '-')}-count"
    workdir.mkdir()
    scenario.prepare(workdir)
    (workdir / "events.txt").unlink(missing_ok=True)
    started = time.monotonic()
    result = run(scenario.command, workdir)
    if result.returncode != 0:
        sys.exit(f"{scenario.name}: the command itself fails: {result.stderr.strip()[-500:]}")
    events = workdir / "events.txt"
    return (len(events.read_text().splitlines()) if events.exists() else 0), time.monotonic() - started


def sigterm_then_resume(root: Path) -> list[str]:
    """SIGTERM once the first epoch's checkpoint exists: exit 143, status interrupted, a last.ckpt
    that --resume finishes from."""
    workdir = root / "sigterm"
    workdir.mkdir()
    command = [sys.executable, "-m", "esq", "run", "squeeze", *TINY_TRAINING[:-1], "20", "--output-dir", "runs"]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(workdir.glob("runs/squeeze/*/checkpoints/*.ckpt")):
        if process.poll() is not None or time.monotonic() > deadline:
            return [f"no checkpoint appeared (rc {process.poll()})"]
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    problems = [] if process.returncode == 143 else [f"rc {process.returncode}, expected 143"]
    (run_dir,) = runs_of(workdir, "squeeze")
    status = json.loads((run_dir / "results.json").read_text()).get("status")
    problems += [] if status == "interrupted" else [f"results.json status {status!r}"]
    problems += [] if "SIGTERM" in stderr else [f"stderr does not say SIGTERM: {stderr.strip()[-200:]}"]
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        return [*problems, "no last.ckpt to resume from"]
    resumed = subprocess.run([*command, "--resume", str(last)], cwd=workdir, capture_output=True, text=True)
    problems += [] if resumed.returncode == 0 else [f"--resume failed: {resumed.stderr.strip()[-300:]}"]
    return problems + problems_in(workdir)


def concurrent_cache(root: Path, second: list[str]) -> list[str]:
    """A cache build and, while it runs, ``second``: neither leaves the cache inconsistent."""
    workdir = root / ("cache-" + "-".join(second[:2]))
    workdir.mkdir()
    environment = {**os.environ, "ESQ_CACHE_DIR": str(workdir / "cache")}
    build = [sys.executable, "-m", "esq", *CACHE_BUILD]
    first = subprocess.Popen(
        build, cwd=workdir, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list(workdir.glob("cache/**/chunk_*.npy")) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    other = subprocess.run(
        [sys.executable, "-m", "esq", *second], cwd=workdir, env=environment, capture_output=True, text=True
    )
    _, first_stderr = first.communicate(timeout=300)
    problems = [] if other.returncode == 0 or other.stderr.count("\n") == 1 else [f"second: {other.stderr[-300:]}"]
    problems += [f"unexpected: {text[-300:]}" for text in (other.stderr, first_stderr) if "unexpected" in text]
    again = subprocess.run(build, cwd=workdir, env=environment, capture_output=True, text=True)
    problems += [] if again.returncode == 0 else [f"build after: {again.stderr.strip()[-300:]}"]
    return problems + problems_in(workdir) + cache_entries_complete(workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    parser.add_argument("--workdir", type=Path, help="keep the cases here (default: a temporary folder, removed)")
    arguments = parser.parse_args()
    root = Path(arguments.workdir or tempfile.mkdtemp(prefix="esq-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    table: list[tuple[str, int, int]] = []
    for scenario in SCENARIOS:
        if arguments.only and scenario.name not in arguments.only:
            continue
        events, seconds = count_events(scenario, root)
        # where the writes are not Python's to see (LMDB's own, a rename through libc), kill on a clock
        cases = [(f"event {n}/{events}", {"kill_at": n}) for n in range(1, events + 1)] or [
            (f"{share:.0%} of its {seconds:.1f} s", {"kill_after": seconds * share})
            for share in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98)  # the writing comes after start-up
        ]
        clean = 0
        tried = 0
        for label, kill in cases:
            problems = one_case(scenario, root, **kill)
            if problems == [FINISHED_FIRST]:
                print(f"{scenario.name}: kill -9 at {label}: {FINISHED_FIRST} (not counted)", flush=True)
                continue
            tried += 1
            clean += not problems
            print(f"{scenario.name}: kill -9 at {label}: {'; '.join(problems) or 'clean'}", flush=True)
        what = "each write and rename" if events else "moments through its run"
        table.append((f"{scenario.name}: kill -9 at {what}", tried, clean))
    extra = {
        "SIGTERM mid-epoch, then --resume": lambda: sigterm_then_resume(root),
        "two concurrent cache builds": lambda: concurrent_cache(root, CACHE_BUILD),
        "cache rm --all during a build": lambda: concurrent_cache(root, ["cache", "rm", "--all"]),
    }
    for name, case in extra.items():
        if arguments.only and name not in arguments.only:
            continue
        problems = case()
        print(f"{name}: {'; '.join(problems) or 'clean'}", flush=True)
        table.append((name, 1, int(not problems)))
    print("\n| scenario | cases | clean |\n|---|---|---|")
    for name, cases, clean in table:
        print(f"| {name} | {cases} | {clean} |")
    if not arguments.workdir:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if all(cases == clean for _, cases, clean in table) else 1)


if __name__ == "__main__":
    main()
