"""One seed for every random number generator a pipeline may use."""

from __future__ import annotations

import importlib.util
import random

import numpy as np


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and (when installed) torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.manual_seed(seed)
