"""What ``hess_max_ev`` and ``ggn_top_eigen(method="lanczos")`` share.

Both run an iterative eigensolver on matrix-vector products of the replayed step;
each solve starts from the previous step's eigenvector estimates (their sum), and the
first solve that reaches ``max_iter`` before it settles raises a warning.
"""

from __future__ import annotations

import math

from torch import Tensor

from cockpit._record import Noted
from cockpit.exceptions import ConfigurationError
from cockpit.stats.eigen import TopEigen


def check_solver(name: str, tol: float, max_iter: int, k: int = 1) -> None:
    """Refuse a tolerance or iteration cap the solver cannot use."""
    if not (isinstance(max_iter, int) and max_iter >= k) or not tol > 0:
        raise ConfigurationError(
            f"{name} needs tol > 0 and an int max_iter >= {k}, got tol={tol!r}, "
            f"max_iter={max_iter!r}."
        )


class WarmStart:
    """The start vector of each solve, and the warning for a capped one.

    Args:
        name: The quantity's log key (for the warning).
        tol: The solver's tolerance (for the warning).

    """

    def __init__(self, name: str, tol: float):
        self.name, self.tol = name, tol
        self._last: Tensor | None = None
        self._warned = False

    @property
    def start(self) -> Tensor | None:
        """``[D]``: the last solve's restart vector (``None`` at first: random)."""
        return self._last

    def keep(self, result: TopEigen) -> None:
        """Start the next solve where this one suggests (its eigenvector estimates)."""
        self._last = result.restart.detach()

    def report(self, result: TopEigen, value: float) -> float | Noted:
        """``value``, noted with a warning if this is the first capped solve."""
        if result.converged or self._warned or not math.isfinite(value):
            return value  # a NaN is logged as non-finite, with its own warning
        self._warned = True
        return Noted(
            value,
            f"{self.name} did not converge in max_iter={result.iterations} "
            f"iterations (tol={self.tol}); its value is logged with converged=false, "
            "and so are later ones without a warning. Raise max_iter or tol.",
        )
