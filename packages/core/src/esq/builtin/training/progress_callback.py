"""Training progress on stderr, named after the model that trains: a bar on a terminal, else a
line every ~10 s (``esq.Progress``), counted in optimizer steps over the whole fit."""

from __future__ import annotations

from typing import Any

import lightning as L

from esq import Progress


class TrainingProgress(L.Callback):
    """Shows ``name``'s training steps (of ``trainer.estimated_stepping_batches``) and its epoch."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shown: Progress | None = None

    def _description(self, trainer: L.Trainer) -> str:
        return f"training {self.name}, epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        steps = int(total) if total != float("inf") else None
        self.shown = Progress(self._description(trainer), steps, done=trainer.global_step)

    def on_train_batch_end(self, trainer: L.Trainer, *_: Any) -> None:
        if self.shown is not None:
            self.shown.advance(trainer.global_step - self.shown.done, self._description(trainer))

    def on_train_end(self, *_: Any) -> None:
        self._close(stopped=False)

    def on_exception(self, *_: Any) -> None:
        self._close(stopped=True)

    def _close(self, stopped: bool) -> None:
        if self.shown is not None:
            self.shown.close(stopped)
            self.shown = None
