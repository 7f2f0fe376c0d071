"""What every quantity is: a schedule, the states it declares, and pure finalizers.

A quantity never reaches into the tracker or an engine. It declares the named states
it needs (:mod:`cockpit.states`): ``states`` once the backward pass has run,
``step_states`` once ``optimizer.step()`` has run. The tracked step gathers the union
of all due quantities' states in one backward pass and calls :meth:`Quantity.finalize`
(and :meth:`Quantity.finalize_step`) with them; both return values that may still be
tensors on the model's device, which the log writer copies to the host in the
background. Curvature quantities also declare which second-order information fills
their states (:meth:`Quantity.amend_curvature`), eigenvalue quantities the solve
(:meth:`Quantity.eigen_request`), and a quantity that projects per-sample gradients on
directions of its own names them (:meth:`Quantity.directions`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from cockpit.schedules import Schedule, as_schedule
from cockpit.states import SPECS

if TYPE_CHECKING:
    from torch import Tensor

    from cockpit.engines.curvature import CurvatureRequest
    from cockpit.engines.eigen_solve import EigenRequest
    from cockpit.quantities._view import StepStates

#: States that only per-sample gradients give.
PER_SAMPLE = frozenset(
    {"sample_grads", "sq_norms", "dots", "sum_sq", "low", "high", "hist"}
    | {"projections", "step_slopes"}
)


class Quantity:
    """Base class. Subclasses set ``name`` and ``states`` and override the finalizers.

    Args:
        schedule: When the quantity is due: a callable ``step -> bool`` or an int k
            (every k steps). Default: every step.

    """

    name: ClassVar[str]
    #: The states :meth:`finalize` reads (names in :data:`cockpit.states.SPECS`).
    states: frozenset[str] = frozenset()
    #: The states :meth:`finalize_step` reads, known after ``optimizer.step()``.
    step_states: frozenset[str] = frozenset()
    #: Computable when the ranks hold the parameters in shards (FSDP,
    #: :mod:`cockpit._sharded`): the finalizers read only sums over samples
    #: (losses, the input's moments) and the norms of per-layer vectors through
    #: :class:`~cockpit.quantities._view.StepStates`' norm views, never elements.
    shardable: ClassVar[bool] = False

    def __init__(self, schedule: Schedule | int = 1):
        self.schedule = as_schedule(schedule, self.name)
        unknown = (self.states | self.step_states) - set(SPECS)
        assert not unknown, f"{self.name} declares unknown states {sorted(unknown)}"

    @property
    def needs_per_sample(self) -> bool:
        """Needs per-sample gradient statistics."""
        return bool((self.states | self.step_states) & PER_SAMPLE)

    @property
    def needs_step(self) -> bool:
        """Needs the step the optimizer took."""
        return bool(self.step_states)

    @property
    def needs_replay(self) -> bool:
        """Needs the model's inputs kept, to replay the forward pass."""
        return "eigen" in self.states

    def is_active(self, step: int) -> bool:
        """Whether the tracker must gather this quantity's states at ``step``."""
        return self.schedule(step)

    def keeps_for_step(self, step: int) -> bool:
        """Whether ``step_states`` are due at ``step`` (they need kept factors)."""
        return bool(self.step_states) and self.schedule(step)

    def directions(self, step: int) -> dict[str, Tensor]:
        """Parameter name -> flat direction ``v`` whose ``projections`` are due."""
        return {}

    def amend_curvature(self, request: CurvatureRequest) -> None:
        """Add this quantity's second-order needs to the shared request."""

    def eigen_request(self) -> EigenRequest | None:
        """The eigensolve whose result fills this quantity's ``eigen`` state."""
        return None

    def options(self) -> dict[str, Any]:
        """The quantity's settings besides the schedule (stored in ``meta.json``)."""
        return {}

    def count(self, states: StepStates) -> Any:
        """Histogram counts of this process's samples on the step's agreed edges.

        A nesting of count tensors and integers that adds over ranks (the edges come
        from the reduced ranges, the same on every rank), or ``None``: the quantity
        counts nothing. Read back with :meth:`StepStates.counts`.
        """
        return None

    def finalize(self, states: StepStates) -> Any:
        """The value at this step from its states, or ``None``."""
        return None

    def finalize_step(self, states: StepStates) -> Any:
        """The value once ``optimizer.step()`` has run, or ``None``."""
        return None

    def __repr__(self) -> str:
        settings = "".join(f", {k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}(schedule={self.schedule!r}{settings})"


__all__ = ["PER_SAMPLE", "Quantity"]
