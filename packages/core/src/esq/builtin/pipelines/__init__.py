"""The built-in pipelines, one module or folder each."""
