"""benchmarks/at_commit.py with the flat route's size limit lifted.

The GPU A/B of the unmerged branch ``flatroute`` (eb1bb0f) against its base
(ce9d1d2) in ``final_run.sh``: ``python3 flat_at.py TREE SCRIPT ARGS...`` runs SCRIPT
against the ``cockpit`` of TREE, and where TREE has ``_flat_route`` it takes the flat
route at every size (``FLAT_ELEMENTS`` lifted). Kept as it ran, reformatted.
"""

import importlib
import os
import runpy
import sys


def main() -> None:
    tree, script = os.path.abspath(sys.argv[1]), sys.argv[2]
    sys.meta_path[:] = [
        finder
        for finder in sys.meta_path
        if "editable" not in getattr(finder, "__name__", "").lower()
    ]
    sys.path[0:0] = [os.path.dirname(os.path.abspath(script)), tree]
    cockpit = importlib.import_module("cockpit")
    assert cockpit.__file__.startswith(tree), cockpit.__file__
    cockpit.__path__.append(tree)
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
