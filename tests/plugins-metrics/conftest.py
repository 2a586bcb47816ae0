"""esq-metrics tests skip cleanly where the plugin is not installed."""

import pytest

pytest.importorskip("esq_metrics")
