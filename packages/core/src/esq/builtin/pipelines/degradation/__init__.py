"""``esq run degradation``: distribution metrics against graded image degradations."""
