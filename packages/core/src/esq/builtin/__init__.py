"""esq-core's own plugin: image sets and segmentation data, the activation cache, training, and the
built-in pipelines. Registered through esq-core's entry point (``esq.builtin.plugin``) like any
third party's plugin, and built on the kernel's public API only."""
