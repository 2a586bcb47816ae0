"""Tests of esq-clip; skipped where the plugin is not installed."""

from __future__ import annotations

import pytest

pytest.importorskip("esq_clip")
