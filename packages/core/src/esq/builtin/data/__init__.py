"""Images and segmentation datasets the built-in pipelines read."""
