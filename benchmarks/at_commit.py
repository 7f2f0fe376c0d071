"""Run a benchmark script against the ``cockpit`` package of another source tree.

An exported commit put first on ``PYTHONPATH`` usually wins over the editable
install, but nothing says so when it does not (a script run with ``-m`` from the
repository, a tree without ``cockpit/``): the comparison then runs one package
twice. This runner takes the editable finder out, puts the tree first, fails unless
``cockpit`` was imported from the tree, and runs the script (its own folder first
too, as Python would)::

    git archive COMMIT | tar -x -C /tmp/before
    .venv/bin/python benchmarks/at_commit.py /tmp/before benchmarks/fixed_cost.py \
        --problems deep_mlp --configs economy

The script is this worktree's; only the package comes from the tree.
"""

from __future__ import annotations

import os
import runpy
import sys
from types import ModuleType


def from_tree(tree: str, script: str) -> ModuleType:
    """Import ``cockpit`` from ``tree`` (ahead of the editable install) for ``script``.

    Puts the script's folder and the tree first on ``sys.path``, takes the editable
    finder out, and fails unless ``cockpit`` came from the tree. Returns it.
    """
    sys.meta_path[:] = [
        finder
        for finder in sys.meta_path
        if "editable" not in getattr(finder, "__name__", "").lower()
    ]
    sys.path[0:0] = [os.path.dirname(os.path.abspath(script)), tree]
    import cockpit

    if not cockpit.__file__ or not cockpit.__file__.startswith(tree):
        raise SystemExit(f"cockpit came from {cockpit.__file__}, not from {tree}")
    # cockpit.zoo, .instruments and .app live beside cockpit/ (setup.cfg package_dir).
    cockpit.__path__.append(tree)
    return cockpit


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(
            "usage: at_commit.py TREE SCRIPT [ARGS...]: TREE holds the cockpit/ "
            f"folder of the commit to run; got {sys.argv[1:]}"
        )
    tree, script = os.path.abspath(sys.argv[1]), sys.argv[2]
    from_tree(tree, script)
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
