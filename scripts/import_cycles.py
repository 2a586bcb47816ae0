"""Counts the import cycles among esq's modules: groups of modules that import each other, directly
or through others, counting imports inside functions too (grimp's graph, as import-linter reads it).

    PYTHONPATH=packages/core/src:... python scripts/import_cycles.py [--check]

prints one line per cycle (its modules) and the count; ``--check`` exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import sys

import grimp

PACKAGES = ("esq", "esq_backbones", "esq_clip", "esq_metrics", "esq_quantizers", "esq_plugin_example")


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Each strongly connected group of two or more modules, sorted."""
    cycles, placed = [], set()
    for module in sorted(graph.modules):
        if module in placed:
            continue
        group = (graph.find_upstream_modules(module) & graph.find_downstream_modules(module)) | {module}
        placed |= group
        if len(group) > 1:
            cycles.append(sorted(group))
    return cycles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when there is a cycle")
    arguments = parser.parse_args()
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = import_cycles(graph)
    for cycle in cycles:
        print(f"cycle of {len(cycle)} modules: {', '.join(cycle)}")
    print(f"{len(cycles)} import cycles among {len(graph.modules)} modules")
    return 1 if arguments.check and cycles else 0


if __name__ == "__main__":
    sys.exit(main())
