"""The record layout of ``steps.jsonl``: the names every writer and reader share.

A record's ``values`` maps log keys to a number, or to a dict in one of these
layouts:

* layered: ``{TOTAL: number, PER_LAYER: {parameter name: number}}``, optionally with
  further number keys (``{"total": 0.8, "variance": 0.1}``), read as dotted
  quantities (``loss.variance``);
* a 1D histogram: ``{EDGES: [B + 1], COUNTS: [B], ...}``;
* a 2D histogram: ``{X_EDGES: [Bx + 1], Y_EDGES: [By + 1], COUNTS: [Bx][By], ...}``,
  optionally with ``PER_LAYER`` histograms of the same form.

Standard library only: the tracker, the dashboard and the readers import it.
"""

from __future__ import annotations

__all__ = ["COUNTS", "EDGES", "PER_LAYER", "TOTAL", "X_EDGES", "Y_EDGES"]

#: The whole network's value of a layered record.
TOTAL = "total"
#: Parameter name -> value, in a layered record.
PER_LAYER = "per_layer"
#: A 1D histogram's ``[B + 1]`` bin edges.
EDGES = "edges"
#: A histogram's counts: ``[B]`` in 1D, ``[Bx][By]`` in 2D.
COUNTS = "counts"
#: A 2D histogram's bin edges along the parameter values (x) and gradients (y).
X_EDGES = "x_edges"
Y_EDGES = "y_edges"
