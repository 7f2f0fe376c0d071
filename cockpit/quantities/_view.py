"""What a quantity's ``finalize`` reads: the step's states and views derived from them.

:class:`StepStates` holds the states the engines filled for the due quantities (see
:mod:`cockpit.states`) and derives shared intermediate results from them once, as
cached properties: ten quantities that need ``||g||^2`` compute it once. Everything
here is a pure function of the states; no engine, model or loss is reachable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from cockpit.logs.schema import PER_LAYER, TOTAL

#: Per-layer per-sample states and how the whole network's value follows from the
#: layers' (concatenate parameter vectors, add per-sample vectors).
_NETWORK: dict[str, Callable[[list[Tensor]], Tensor]] = {
    "sample_grads": torch.cat,
    "sum_sq": torch.cat,
    "sq_norms": lambda parts: torch.stack(parts).sum(0),
    "dots": lambda parts: torch.stack(parts).sum(0),
    "low": lambda parts: torch.stack(parts).min(),
    "high": lambda parts: torch.stack(parts).max(),
}


class StepStates:
    """The states of one tracked step, read by the due quantities' ``finalize``.

    Args:
        step: The step index.
        states: State name -> value, as filled by the engines.

    """

    def __init__(self, step: int, states: dict[str, Any]):
        self.step = step
        self._states = states

    def __getitem__(self, name: str) -> Any:
        return self._states[name]

    def __contains__(self, name: str) -> bool:
        return name in self._states

    def update(self, states: dict[str, Any]) -> None:
        """Add states that became known later (those after ``optimizer.step()``)."""
        self._states.update(states)

    @property
    def batch_size(self) -> int:
        """N."""
        return self["losses"].shape[0]

    @property
    def mean_scale(self) -> float:
        """``1`` for a mean-reduced loss, ``1/N`` for a summed one (mean convention)."""
        return 1.0 if self["mean_reduction"] else 1.0 / self.batch_size

    @functools.cached_property
    def loss(self) -> Tensor:
        """``L = (1/N) sum_n l_n``."""
        return self["losses"].mean()

    @functools.cached_property
    def loss_variance(self) -> Tensor:
        """Unbiased sample variance of the per-sample losses."""
        return self["losses"].var(correction=1)

    @functools.cached_property
    def grad_sq_norms(self) -> dict[str, Tensor]:
        """``||g_l||^2`` of the gradient in ``.grad``, per parameter and as TOTAL."""
        norms = {name: (g**2).sum() for name, g in self["grads"].items()}
        norms[TOTAL] = torch.stack(list(norms.values())).sum()
        return norms

    def network(self, name: str) -> dict[str, Tensor]:
        """A per-layer per-sample state with the whole network's value under TOTAL.

        Network-wide ``g_n . g`` is the sum of the per-layer ``g_{n,l} . g_l``, and
        likewise for squared norms, so the total needs no extra pass.
        """
        if name not in self._networks:
            layers = self[name]
            self._networks[name] = {
                **layers,
                TOTAL: _NETWORK[name](list(layers.values())),
            }
        return self._networks[name]

    @functools.cached_property
    def _networks(self) -> dict[str, dict[str, Tensor]]:
        return {}

    @functools.cached_property
    def sample_grad_sq_norms(self) -> dict[str, Tensor]:
        """``||g_l||^2`` of the gradient the per-sample statistics came from."""
        return {n: (g**2).sum() for n, g in self.network("sample_grads").items()}

    def layered(self, fn: Callable[[str], Any]) -> dict[str, Any]:
        """``fn(name)`` for every parameter and TOTAL, in the log's layered layout."""
        values = {name: fn(name) for name in self.network("sq_norms")}
        return {TOTAL: values.pop(TOTAL), PER_LAYER: values}

    def curvature_diagonal(self, source: str) -> dict[str, Tensor]:
        """Parameter name -> ``[D_l]`` curvature diagonal of the mean loss ``L``."""
        if source not in self._diagonals:
            self._diagonals[source] = {
                name: diag.reshape(-1) * self.mean_scale
                for name, diag in self["diagonals"][source].items()
            }
        return self._diagonals[source]

    @functools.cached_property
    def _diagonals(self) -> dict[str, dict[str, Tensor]]:
        return {}
