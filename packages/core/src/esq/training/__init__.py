"""Training segmentation heads and quantizers on frozen backbones with Lightning."""
