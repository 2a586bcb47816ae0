"""``esq run similarity``: similarity metrics between original and quantized features."""
