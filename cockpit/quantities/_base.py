"""What every quantity is: a schedule, declared needs, and a compute step.

A quantity never reaches into the tracker. It declares what it needs as class
attributes (``needs_per_sample``, ``needs_sum_sq``, ...) and the tracker gathers the
union of all due quantities' needs in one backward pass. It then calls
:meth:`Quantity.compute` after ``backward()`` and :meth:`Quantity.after_step` after
``optimizer.step()``; both return tensors (left on the model's device) that the
log writer copies to the host in the background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from cockpit.engines.curvature import CurvatureRequest
from cockpit.engines.layer_stats import SampleRequest
from cockpit.schedules import Schedule, as_schedule

if TYPE_CHECKING:
    from cockpit.quantities._context import StepContext, StepTaken


class Quantity:
    """Base class. Subclasses set ``name`` and override ``compute``/``after_step``.

    Args:
        schedule: When the quantity is due: a callable ``step -> bool`` or an int k
            (every k steps). Default: every step.

    """

    name: ClassVar[str]
    #: Needs per-sample gradient statistics (norms, projections) from BackPACK.
    needs_per_sample: ClassVar[bool] = False
    #: Needs ``sum_n g_{n,j}^2`` per element.
    needs_sum_sq: ClassVar[bool] = False
    #: Needs a sample of per-sample gradient elements (and parameter values).
    needs_histogram: ClassVar[bool] = False
    needs_param_values: ClassVar[bool] = False
    #: Needs the parameters as they were when tracking started.
    needs_initial_params: ClassVar[bool] = False
    #: Needs the step the optimizer took (parameters before and after its step()).
    needs_step: ClassVar[bool] = False
    #: Needs the model's inputs kept, to replay the forward pass (Hessian products).
    needs_replay: ClassVar[bool] = False

    def __init__(self, schedule: Schedule | int = 1):
        self.schedule = as_schedule(schedule, self.name)

    def is_active(self, step: int) -> bool:
        """Whether the tracker must gather this quantity's needs at ``step``."""
        return self.schedule(step)

    def amend(self, step: int, request: SampleRequest) -> None:
        """Add this quantity's per-sample needs at ``step`` to the shared request."""
        request.sum_sq |= self.needs_sum_sq
        request.with_param_values |= self.needs_param_values

    def amend_curvature(self, request: CurvatureRequest) -> None:
        """Add this quantity's second-order (BackPACK) needs to the shared request."""

    def options(self) -> dict[str, Any]:
        """The quantity's settings besides the schedule (stored in ``meta.json``)."""
        return {}

    def compute(self, ctx: StepContext) -> Any:
        """The value at this step from what the backward pass gathered, or ``None``."""
        return None

    def after_step(self, ctx: StepContext, taken: StepTaken) -> Any:
        """The value once ``optimizer.step()`` has run, or ``None``."""
        return None

    def __repr__(self) -> str:
        settings = "".join(f", {k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}(schedule={self.schedule!r}{settings})"


__all__ = ["Quantity"]
