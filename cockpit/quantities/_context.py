"""What a tracked step gathered, shared by all quantities computed at that step.

Shared intermediate results (total per-sample norms, ``||g||^2`` per layer, ...) are
cached properties, so ten quantities that need ``||g||^2`` compute it once.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from cockpit.engines.curvature import Curvature
from cockpit.engines.hessian import ForwardCapture
from cockpit.engines.layer_stats import LayerStats

TOTAL = "total"


@dataclass
class StepTaken:
    """The step the optimizer took: ``s = theta_{t+1} - theta_t`` per parameter.

    Attributes:
        delta: Parameter name -> flat ``s_l``.

    """

    delta: dict[str, Tensor]

    @functools.cached_property
    def sq_norms(self) -> dict[str, Tensor]:
        """``||s_l||^2`` per parameter."""
        return {name: (s**2).sum() for name, s in self.delta.items()}

    @functools.cached_property
    def length(self) -> Tensor:
        """``tau = ||s||``."""
        return torch.stack(list(self.sq_norms.values())).sum().sqrt()


@dataclass
class StepContext:
    """Everything the due quantities may use at one tracked step.

    Attributes:
        step: The step index.
        losses: ``[N]``, per-sample losses ``l_n`` (mean convention, QUANTITIES.md).
        grads: Parameter name -> flat mini-batch gradient ``g_l`` of ``L = mean l_n``.
        params: Parameter name -> parameter.
        initial: Parameter name -> parameters at the start (if a quantity needs them).
        layers: Parameter name -> per-sample statistics (empty if none were due).
        late: ``(step, key, value)`` for values that belong to an earlier step (alpha).
        plain_sgd_lr: The learning rate if the optimizer is plain SGD, else ``None``.
        mean_reduction: The user's loss averages over samples (else it sums).
        curvature: What the second-order extensions gathered (if any were due).
        replay: The model's kept inputs, to replay the forward pass (if needed).
        loss_fn: The user's loss module.
        loss_input: Maps the model's output to the loss module's input.
        target: The target the loss module was called with.
        generator: The tracker's random generator on a device.

    """

    step: int
    losses: Tensor
    grads: dict[str, Tensor]
    params: dict[str, torch.nn.Parameter]
    initial: dict[str, Tensor] = field(default_factory=dict)
    layers: dict[str, LayerStats] = field(default_factory=dict)
    late: list[tuple[int, str, Any]] = field(default_factory=list)
    plain_sgd_lr: float | None = None
    mean_reduction: bool = True
    curvature: Curvature = field(default_factory=Curvature)
    replay: ForwardCapture | None = None
    loss_fn: Any = None
    loss_input: Any = None
    target: Any = None
    generator: Any = None

    def replayed_loss_input(self) -> Tensor:
        """The loss module's input from a replayed forward pass (with graph)."""
        assert self.replay is not None
        return self.loss_input(self.replay.replay())

    def replayed_loss(self) -> Tensor:
        """The batch loss of a replayed forward pass (with graph, for Hessian products)."""
        return self.loss_fn(self.replayed_loss_input(), self.target)

    @property
    def mean_scale(self) -> float:
        """``1`` for a mean-reduced loss, ``1/N`` for a summed one (mean convention)."""
        return 1.0 if self.mean_reduction else 1.0 / self.batch_size

    @property
    def batch_size(self) -> int:
        """N."""
        return self.losses.shape[0]

    @functools.cached_property
    def loss(self) -> Tensor:
        """``L = (1/N) sum_n l_n``."""
        return self.losses.mean()

    @functools.cached_property
    def loss_variance(self) -> Tensor:
        """Unbiased sample variance of the per-sample losses."""
        return self.losses.var(correction=1)

    @functools.cached_property
    def grad_sq_norms(self) -> dict[str, Tensor]:
        """``||g_l||^2`` per parameter and under ``"total"``."""
        norms = {name: (g**2).sum() for name, g in self.grads.items()}
        norms[TOTAL] = torch.stack(list(norms.values())).sum()
        return norms

    @functools.cached_property
    def stats(self) -> dict[str, LayerStats]:
        """Per-sample statistics per parameter plus the whole network as ``"total"``.

        Network-wide ``g_n . g`` is the sum of the per-layer ``g_{n,l} . g_l``, and
        likewise for squared norms, so the total needs no extra pass.
        """
        layers = list(self.layers.values())
        total = LayerStats(
            grad=torch.cat([s.grad for s in layers]),
            sq_norms=torch.stack([s.sq_norms for s in layers]).sum(0),
            dots=torch.stack([s.dots for s in layers]).sum(0),
        )
        if all(s.sum_sq is not None for s in layers):
            total.sum_sq = torch.cat([s.sum_sq for s in layers])
        if all(s.low is not None for s in layers):
            total.low = torch.stack([s.low for s in layers]).min()
            total.high = torch.stack([s.high for s in layers]).max()
        return {**self.layers, TOTAL: total}

    def curvature_diagonal(self, source: str) -> dict[str, Tensor]:
        """Parameter name -> ``[D_l]`` curvature diagonal of the mean loss ``L``."""
        if source not in self._diagonals:
            self._diagonals[source] = {
                name: diag.reshape(-1) * self.mean_scale
                for name, diag in self.curvature.diagonals[source].items()
            }
        return self._diagonals[source]

    @functools.cached_property
    def _diagonals(self) -> dict[str, dict[str, Tensor]]:
        return {}

    def per_layer(self, fn) -> dict[str, Any]:
        """Apply ``fn(stats, grad_sq_norm)`` to every layer and the total.

        Returns:
            ``{"total": value, "per_layer": {name: value}}``, the log's layout.

        """
        values = {
            name: fn(stats, self.stats_grad_sq_norm(name))
            for name, stats in self.stats.items()
        }
        return {TOTAL: values.pop(TOTAL), "per_layer": values}

    def stats_grad_sq_norm(self, name: str) -> Tensor:
        """``||g_l||^2`` of the gradient the per-sample statistics were taken from."""
        return self._stats_grad_sq_norms[name]

    @functools.cached_property
    def _stats_grad_sq_norms(self) -> dict[str, Tensor]:
        return {name: (s.grad**2).sum() for name, s in self.stats.items()}
