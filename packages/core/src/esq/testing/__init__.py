"""Conformance checks for components, for esq's plugins and third parties alike.

Each ``check_*`` builds the component from its spec, exercises its protocol (shapes, dtypes,
determinism under a seed, input validation, option round trip) and raises ``AssertionError``
naming what is wrong. Call them from your plugin's tests::

    from esq.testing import check_metric, registry_of
    from my_plugin import plugin

    def test_my_metric_conforms():
        check_metric(registry_of("metrics", plugin).spec("my_metric"))
"""

from esq.testing.backbones import check_backbone
from esq.testing.degradations import check_degradation
from esq.testing.metrics import check_metric
from esq.testing.quantizers import check_quantizer
from esq.testing.registries import registry_of
from esq.testing.retrievers import check_retriever

__all__ = [
    "check_backbone",
    "check_degradation",
    "check_metric",
    "check_quantizer",
    "check_retriever",
    "registry_of",
]
