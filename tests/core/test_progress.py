"""Progress on stderr: lines with done/total and the time left off a terminal, a bar on one."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

import esq
import esq.console
from esq import ConfigError, Progress, RunContext
from esq.builtin.training.progress_callback import TrainingProgress
from esq.progress import line_interval, progress


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_lines_say_done_total_elapsed_and_time_left() -> None:
    stream = io.StringIO()
    with Progress("features", total=10, stream=stream, every=0) as shown:
        shown.advance(4)
        shown.advance(6, description="features (last batch)")
    first, second, last = lines(stream)
    assert first.startswith("features: 4/10 (40%), 0:00 elapsed, about ")
    assert first.endswith(" left")
    assert second.startswith("features (last batch): 10/10 (100%)")
    assert "left" not in second
    assert last.startswith("features (last batch): 10 done in ")


def test_no_line_before_the_interval_and_none_at_the_end_of_a_short_wait() -> None:
    stream = io.StringIO()
    with Progress("quick", total=3, stream=stream, every=3600) as shown:
        shown.advance(3)
    assert stream.getvalue() == ""


def test_a_wait_ended_by_an_error_says_where_it_stopped() -> None:
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt), Progress("steps", total=50, stream=stream, every=0) as shown:
        shown.advance(7)
        raise KeyboardInterrupt
    assert lines(stream)[-1].startswith("steps: stopped at 7/50 after ")


def test_an_unknown_total_counts_what_is_done() -> None:
    stream = io.StringIO()
    with Progress("batches", stream=stream, every=0) as shown:
        shown.advance(2)
    assert lines(stream)[0].startswith("batches: 2 done, 0:00 elapsed")


def test_a_resumed_count_estimates_from_what_this_run_did() -> None:
    stream = io.StringIO()
    shown = Progress("steps", total=100, done=90, stream=stream, every=0)
    shown.advance(5)
    assert lines(stream)[0].startswith("steps: 95/100 (95%)")


@pytest.mark.parametrize("value", ["ten", "-1", "nan"])
def test_a_bad_interval_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("ESQ_PROGRESS_SECONDS", value)
    with pytest.raises(ConfigError, match=f"ESQ_PROGRESS_SECONDS='{value}'"):
        line_interval()


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESQ_PROGRESS_SECONDS", "2.5")
    assert line_interval() == 2.5
    monkeypatch.delenv("ESQ_PROGRESS_SECONDS")
    assert line_interval() == 10.0


def plain_stderr(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> io.StringIO:
    stream = io.StringIO()
    monkeypatch.setattr(esq.console, "stderr", Console(file=stream, force_terminal=terminal, width=100))
    return stream


def test_off_a_terminal_the_run_context_prints_lines_to_stderr(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    stream = plain_stderr(monkeypatch, terminal=False)
    monkeypatch.setenv("ESQ_PROGRESS_SECONDS", "0")
    context = RunContext(tmp_path, None, None)
    assert list(context.progress(range(3), "images")) == [0, 1, 2]
    assert lines(stream)[-2].startswith("images: 3/3 (100%)")
    assert lines(stream)[-1].startswith("images: 3 done in ")


def test_on_a_terminal_a_bar_that_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = plain_stderr(monkeypatch, terminal=True)
    monkeypatch.setenv("ESQ_PROGRESS_SECONDS", "0")
    assert list(progress(iter(range(3)), "images", total=3)) == [0, 1, 2]
    assert "images" in stream.getvalue()
    assert "done in" not in stream.getvalue()


def test_progress_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    stream = plain_stderr(monkeypatch, terminal=False)
    monkeypatch.setenv("ESQ_PROGRESS_SECONDS", "0")
    assert list(RunContext(tmp_path, None, None, show_progress=False).progress(range(3), "images")) == [0, 1, 2]
    assert stream.getvalue() == ""


def test_training_progress_names_the_model_and_counts_steps_and_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = plain_stderr(monkeypatch, terminal=False)
    monkeypatch.setenv("ESQ_PROGRESS_SECONDS", "0")
    trainer = SimpleNamespace(estimated_stepping_batches=8, global_step=2, current_epoch=0, max_epochs=4)
    callback = TrainingProgress("tiny_cnn + vq")
    callback.on_train_start(trainer, None)
    trainer.global_step, trainer.current_epoch = 6, 2
    callback.on_train_batch_end(trainer)
    callback.on_train_end(trainer, None)
    assert lines(stream)[0].startswith("training tiny_cnn + vq, epoch 3/4: 6/8 (75%)")
    assert lines(stream)[1].startswith("training tiny_cnn + vq, epoch 3/4: 6 done in ")
    callback.on_train_start(trainer, None)
    callback.on_train_batch_end(trainer)
    callback.on_exception(trainer, None, KeyboardInterrupt())
    assert lines(stream)[-1].startswith("training tiny_cnn + vq, epoch 3/4: stopped at 6/8 after ")
    assert esq.Progress is Progress
