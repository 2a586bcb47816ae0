"""An example third-party esq plugin (see README.md)."""

from esq_plugin_example.cosine import mean_cosine

__all__ = ["mean_cosine"]
