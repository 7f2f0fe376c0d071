"""The layout of a run directory and of its records: the names writers and readers share.

A run directory holds :data:`META_FILE` and :data:`STEPS_FILE`; each line of the latter
is one record::

    {STEP: int, TIME: float, VALUES: {log key: value}, NONFINITE: [path, ...]}

with :data:`NONFINITE` only where a value was not finite, :data:`NOTES` where the
tracker explains a value, and :data:`ERROR` (and empty :data:`VALUES`) where the writer
could not log the step. These are the records as readers return them; on disk, format
3.0 also writes :data:`LAYERS` and leaves out notes a reader can tell
(``cockpit.logs._format``). A record's :data:`VALUES` maps log keys to a number, or to a
dict in one of these layouts:

* layered: ``{TOTAL: number, PER_LAYER: {parameter name: number}}``, optionally with
  further number keys (``{"total": 0.8, "variance": 0.1}``), read as dotted
  quantities (``loss.variance``);
* a 1D histogram: ``{EDGES: [B + 1], COUNTS: [B], MIN, MAX, SAMPLE_SIZE, TOTAL}``;
* a 2D histogram: ``{X_EDGES: [Bx + 1], Y_EDGES: [By + 1], COUNTS: [Bx][By],
  SAMPLE_SIZE, TOTAL}``, optionally with ``PER_LAYER`` histograms of the same form
  that may leave out the edges they share with the whole model's.

The encoding (non-finite numbers, the format version) is ``cockpit.logs._format``'s.
Standard library only: the tracker, the dashboard and the readers import it.
"""

from __future__ import annotations

__all__ = [
    "COUNTS",
    "EDGES",
    "ERROR",
    "LAYERS",
    "MAX",
    "META_FILE",
    "MIN",
    "NONFINITE",
    "NOTES",
    "NOTICES",
    "PER_LAYER",
    "SAMPLE_SIZE",
    "STEP",
    "STEPS_FILE",
    "TIME",
    "TOTAL",
    "VALUES",
    "X_EDGES",
    "Y_EDGES",
]

#: The run's description: one JSON object, rewritten atomically.
META_FILE = "meta.json"
#: The run's records: one JSON object per line, appended.
STEPS_FILE = "steps.jsonl"

#: A record's integer step.
STEP = "step"
#: A record's wall-clock time, seconds since the epoch.
TIME = "time"
#: A record's logged values, by log key.
VALUES = "values"
#: Paths (relative to :data:`VALUES`) of the non-finite numbers written as ``null``.
NONFINITE = "nonfinite"
#: Path -> why the value there is what it is (e.g. why it is not finite).
NOTES = "notes"
#: The parameter names of a record's ``per_layer`` lists (format 3.0): readers turn
#: each list back into ``{name: value}`` (``cockpit.logs._layer_table``).
LAYERS = "layers"
#: Why the writer could not log a record; such a record has no values.
ERROR = "error"
#: Messages a record hands to the writer's notices; never written to the log.
NOTICES = "notices"

#: The whole network's value: of a layered record, or the number of values a
#: histogram describes (of which :data:`SAMPLE_SIZE` were binned).
TOTAL = "total"
#: Parameter name -> value, in a layered record or a histogram.
PER_LAYER = "per_layer"
#: A 1D histogram's ``[B + 1]`` bin edges.
EDGES = "edges"
#: A histogram's counts: ``[B]`` in 1D, ``[Bx][By]`` in 2D.
COUNTS = "counts"
#: A 2D histogram's bin edges along the parameter values (x) and gradients (y).
X_EDGES = "x_edges"
Y_EDGES = "y_edges"
#: A 1D histogram's smallest and largest binned value; its edges span at least these.
MIN = "min"
MAX = "max"
#: How many values a histogram binned.
SAMPLE_SIZE = "sample_size"
