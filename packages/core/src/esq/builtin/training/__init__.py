"""Training a segmentation head, with or without a quantizer, on a frozen backbone (Lightning).

``NO_QUANTIZER`` is what ``quantizer`` is set to for the head alone (``esq run baseline``); it is
not a component (the registry's ``identity`` quantizer is one, and costs 32 bits a dimension).
"""

NO_QUANTIZER = "none"
