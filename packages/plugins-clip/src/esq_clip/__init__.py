"""esq-clip: Chinese-CLIP retrieval evaluation for esq (``esq run retrieval``)."""
