"""benchmarks/at_commit.py with the flat route's size limit lifted.

The GPU A/B of the unmerged branch ``flatroute`` (eb1bb0f) against its base
(ce9d1d2) in ``final_run.sh``: ``python3 flat_at.py TREE SCRIPT ARGS...`` runs SCRIPT
against the ``cockpit`` of TREE (:func:`at_commit.from_tree`), and where TREE has
``_flat_route`` it takes the flat route at every size (``FLAT_ELEMENTS`` lifted).
Run from the repository root; the device run copied this file into ``.gpu_trees/``.
"""

import importlib
import os
import runpy
import sys


def main() -> None:
    tree, script = os.path.abspath(sys.argv[1]), sys.argv[2]
    sys.path.insert(0, os.path.abspath("benchmarks"))
    from_tree = importlib.import_module("at_commit").from_tree
    from_tree(tree, script)
    try:
        flat_route = importlib.import_module("cockpit.engines._flat_route")
    except ImportError:
        print("no flat route in this tree", file=sys.stderr)
    else:
        flat_route.FLAT_ELEMENTS = 2**40
        print("flat route limit lifted", file=sys.stderr)
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
