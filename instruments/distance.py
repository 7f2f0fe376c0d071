"""Distance from the initialization and size of each update, over steps."""

from __future__ import annotations

from cockpit.instruments._lines import LinesInstrument

__all__ = ["DistanceGauge"]


class DistanceGauge(LinesInstrument):
    """``distance`` and ``update_size`` on two stacked axes."""

    id = "distance"
    title = "Distance and update size"
    how_to_read = (
        "Steady growth of the distance is normal; growth while the loss stalls hints at "
        "drifting (often a learning rate too large), and update sizes that collapse mean "
        "training has stopped moving."
    )
    quantities = ("distance", "update_size")
    rows = (("distance",), ("update_size",))
    labels = (("distance", "distance"), ("update_size", "update size"))
    per_layer = True
    height = 420
