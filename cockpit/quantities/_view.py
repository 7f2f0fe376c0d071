"""What a quantity's ``finalize`` reads: the step's states and views derived from them.

:class:`StepStates` holds the states the engines filled for the due quantities (see
:mod:`cockpit.states`) and derives shared intermediate results from them once, as
cached properties: ten quantities that need ``||g||^2`` compute it once. Everything
here is a pure function of the states; no engine, model or loss is reachable.
"""

from __future__ import annotations

import functools
from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from cockpit import _flat_buffers, _stacked_views
from cockpit._layer_rows import LayerRows, stacked
from cockpit.logs.schema import PER_LAYER, TOTAL
from cockpit.quantities import _chunked
from cockpit.quantities._chunked import ElementwiseFn
from cockpit.stats import moments
from cockpit.stats.histograms import safe_range
from cockpit.stats.parameters import param_norms

#: Per-layer states and how the whole network's value follows from the layers'
#: (concatenate parameter vectors; per-sample moments: :data:`_ROWS`).
_NETWORK: dict[str, Callable[[dict[str, Tensor]], Tensor]] = {
    "sample_grads": lambda layers: torch.cat(_flat_buffers.listed(layers)),
    "sum_sq": lambda layers: torch.cat(_flat_buffers.listed(layers)),
    "low": lambda layers: _stacked(layers).min(),
    "high": lambda layers: _stacked(layers).max(),
}


def _stacked(layers: dict[str, Tensor]) -> Tensor:
    """``[L, ...]``: the layers' values, from their groups' stacks if they have."""
    if isinstance(layers, _stacked_views.StackedViews):
        return layers.rows()
    return torch.stack(list(layers.values()))


#: Per-layer per-sample moments, stacked to ``[L + 1, 3]`` with the network's (of the
#: per-sample sums over layers) as the last row, so that a formula runs once for all
#: layers.
_ROWS = ("sq_norms", "dots")


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
        """N, from the ``count`` state (a host integer)."""
        return self["count"]

    @property
    def mean_scale(self) -> float:
        """``1`` for a mean-reduced loss, ``1/N`` for a summed one (mean convention)."""
        return 1.0 if self["mean_reduction"] else 1.0 / self.batch_size

    def counts(self, quantity: Any) -> Any:
        """``quantity.count(self)``, summed over the ranks on a step split across them.

        The ``counted`` state holds the sums when the step's ranks have exchanged
        them (:mod:`cockpit._distributed`); in one process the counts are this
        process's.
        """
        counted = self._states.get("counted", {})
        if quantity.name in counted:
            return counted[quantity.name]
        return quantity.count(self)

    @functools.cached_property
    def loss(self) -> Tensor:
        """``L = (1/N) sum_n l_n``, float64."""
        return moments.mean(self["losses"])

    @functools.cached_property
    def loss_variance(self) -> Tensor:
        """Unbiased sample variance of the per-sample losses, float64."""
        return moments.variance(self["losses"])

    @functools.cached_property
    def grad_norms(self) -> Tensor:
        """``[L + 1]``: ``||g_l||`` of the gradient in ``.grad``, TOTAL last.

        One ``_foreach_norm`` for all parameters (a fused kernel on a GPU).
        """
        sharded = self._shard_norms("grads")
        if sharded is not None:
            return sharded
        return norm_rows(self["grads"])

    @functools.cached_property
    def param_norm_rows(self) -> Tensor:
        """``[L + 1]``: ``||theta_l||`` of the parameters, TOTAL last.

        :func:`cockpit.stats.parameters.param_norms` of the parameters, unless the
        ranks hold them in shards.
        """
        sharded = self._shard_norms("params")
        if sharded is not None:
            return sharded
        params = {name: p.detach() for name, p in self["params"].items()}
        total, per_layer = param_norms(params)
        return torch.stack([*per_layer.values(), total])

    @functools.cached_property
    def moved_norms(self) -> Tensor:
        """``[L + 1]``: ``||theta_l - theta_{0,l}||`` from ``initial``, TOTAL last.

        From the flat buffers of ``initial`` (:func:`_flat_buffers.copies`): per
        buffer one concatenation of the parameters' current values, one difference
        and its segments' norms, a few operations whatever the number of
        parameters. A network of several buffers (more than
        :data:`~cockpit._flat_buffers.BUCKET_ELEMENTS` elements on a CPU) does this
        a buffer at a time in a reused one (:func:`cockpit._scratch.scratch`), so
        that no network-sized temporary is allocated. Without flat buffers, a
        difference per parameter.
        """
        sharded = self._shard_norms("moved")
        if sharded is not None:
            return sharded
        params, start = self["params"], self["initial"]
        if isinstance(start, _flat_buffers.FlatViews) and start.live is not None:
            return with_total(_chunked.moved_segment_norms(start, start.live()))
        initial = [start[name] for name in params]
        with torch.no_grad():  # the parameters require grad; no graph is needed
            moved = torch._foreach_sub(list(params.values()), initial)
        return norm_rows(dict(zip(params, moved, strict=True)))

    @functools.cached_property
    def step_norms(self) -> Tensor:
        """``[L + 1]``: ``||s_l||`` of the step the optimizer took, TOTAL last."""
        if "step_shard_norms" in self:
            return self["step_shard_norms"]
        return with_total(self["step"].norm_rows)

    @functools.cached_property
    def grad_extremes(self) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """``(min, max, span)`` of all per-sample gradient elements of the network.

        ``span`` is :func:`~cockpit.stats.histograms.safe_range` of the two, the
        range the histogram's counts and its edges are both taken on: once per step.
        """
        lowest, highest = self.network("low")[TOTAL], self.network("high")[TOTAL]
        return lowest, highest, safe_range(lowest, highest)

    def _shard_norms(self, key: str) -> Tensor | None:
        """The ranks' norms of a sharded per-layer state (FSDP), else ``None``.

        ``key``: ``grads``, ``params`` or ``moved`` (``params - initial``); see
        the ``shard_norms`` state (:mod:`cockpit._sharded`).
        """
        return self._states["shard_norms"][key] if "shard_norms" in self else None

    def network(self, name: str) -> Mapping[str, Tensor]:
        """A per-layer state with the whole network's value under TOTAL.

        The layers' values are read from the state only where a reader asks for
        them (no row selected per layer for a reader of TOTAL alone).

        For per-sample moments (``sq_norms``, ``dots``) the network's row is that of
        the per-sample sums over layers (network-wide ``g_n . g`` is the sum of the
        per-layer ``g_{n,l} . g_l``), summarized with the layers'.
        """
        if name not in self._networks:
            if name in _ROWS:
                self._networks[name] = _by_name(self._layers, self.rows(name))
            else:
                layers = self[name]
                total = _NETWORK[name](layers)
                self._networks[name] = ChainMap({TOTAL: total}, layers)
        return self._networks[name]

    def rows(self, name: str) -> Tensor:
        """``[L + 1, 3]``: per-sample moments (``sq_norms``, ``dots``) of every layer.

        The layers in the order of ``sample_grads``, the network's (of the per-sample
        sums over layers) last, so that a formula runs once for all layers.
        """
        if name not in self._rows:
            layers, network = self[name]["layers"], self[name]["network"]
            self._rows[name] = torch.cat(
                [stacked(layers, self._layers), network.unsqueeze(0)]
            )
        return self._rows[name]

    @functools.cached_property
    def _rows(self) -> dict[str, Tensor]:
        return {}

    @property
    def layer_names(self) -> list[str]:
        """The parameters with per-sample statistics, in the order of :meth:`rows`."""
        return self._layers

    @functools.cached_property
    def _layers(self) -> list[str]:
        """The parameters with per-sample statistics, in the order of the rows.

        From whichever per-layer per-sample state the step holds (a quantity may
        declare ``sq_norms`` without ``sample_grads``); all list the same layers.
        """
        if "sample_grads" in self:
            return list(self["sample_grads"])
        for name in _ROWS:
            if name in self:
                return list(self[name]["layers"])
        raise KeyError("no per-layer per-sample state in this step")

    def layered_rows(
        self, values: Tensor, names: list[str] | None = None
    ) -> dict[str, Any]:
        """``[L + 1]`` values in the log's layout, the network's last.

        Args:
            values: One value per layer, in the order of ``names`` (default: of
                :meth:`rows`), then the network's.
            names: The layers' names.

        """
        names = self._layers if names is None else names
        return {TOTAL: values[-1], PER_LAYER: LayerRows(names, values[:-1])}

    @functools.cached_property
    def _networks(self) -> dict[str, Mapping[str, Tensor]]:
        return {}

    @functools.cached_property
    def sample_grad_sq_norm_rows(self) -> Tensor:
        """``[L + 1]``: ``||g_l||^2`` of the per-sample statistics' gradient.

        In the order of :meth:`rows`, the network's last. Where those are the very
        tensors of ``grads`` (the batch replay's statistics carry the block's
        gradient), :attr:`grad_norms` squared: one pass over the parameters, not two
        (5 ms a step on ResNet-18 on a CPU).
        """
        if self._sample_grads_are_grads():
            return self.grad_norms.square()
        return norm_rows(self["sample_grads"]).square()  # in the order of _layers

    def _sample_grads_are_grads(self) -> bool:
        """Whether ``sample_grads`` holds ``grads``'s tensors, in its order, unsharded."""
        if "grads" not in self or "shard_norms" in self:
            return False
        grads, sample = self["grads"], self["sample_grads"]
        if isinstance(sample, _stacked_views.StackedViews) or len(sample) != len(grads):
            return False  # rows of group stacks are never .grad
        return all(
            name == other and sample[name] is grads[name]
            for name, other in zip(sample, grads, strict=True)
        )

    @functools.cached_property
    def sample_grad_sq_norms(self) -> dict[str, Tensor]:
        """``||g_l||^2`` of the gradient the per-sample statistics came from."""
        return _by_name(self._layers, self.sample_grad_sq_norm_rows)

    @torch.no_grad()  # out= takes no graph; a state may carry one (torch.func engine)
    def elementwise_means(self, fn: ElementwiseFn, first: str, second: str) -> Tensor:
        """``[L + 1]``: each layer's mean of ``fn`` of two element-wise states, whole last.

        ``fn([D], [D], out) -> [D]`` on the values of the per-layer states ``first``
        and ``second`` (laid out as ``sample_grads``); the routes (per group stack,
        once on the network's values, by chunks of layers) are
        :func:`cockpit.quantities._chunked.layer_means`'s.
        """
        return _chunked.layer_means(
            fn,
            self[first],
            self[second],
            lambda: self._whole_means(fn, first, second),
        )

    def _whole_means(self, fn: ElementwiseFn, first: str, second: str) -> Tensor:
        """:meth:`elementwise_means` once on the network's values."""
        x, y = self.network(first)[TOTAL], self.network(second)[TOTAL]
        return self.segment_means(fn(x, y, _chunked.buffers(x.numel(), [x], [y])))

    def segment_means(self, values: Tensor) -> Tensor:
        """``[L + 1]``: means of ``[D]`` values over each parameter's segment.

        ``values`` are element-wise values in the layout of the network's
        ``sample_grads`` (the layers' concatenation); the whole mean comes last.
        Equal, equally spaced segments are averaged in one call
        (:func:`cockpit._flat_buffers.segment_means`), so the work grows with the
        number of distinct sizes, not of parameters.
        """
        sizes = _flat_buffers.numels(self["sample_grads"])  # in the order of _layers
        means = _flat_buffers.segment_means(values, sizes)
        return torch.cat([means, values.mean().reshape(1)])

    def layered(self, fn: Callable[[str], Any]) -> dict[str, Any]:
        """``fn(name)`` for every parameter and TOTAL, in the log's layered layout."""
        values = {name: fn(name) for name in self.network("sq_norms")}
        return {TOTAL: values.pop(TOTAL), PER_LAYER: values}

    def curvature_diagonal(self, source: str) -> dict[str, Tensor]:
        """Parameter name -> ``[D_l]`` curvature diagonal of the mean loss ``L``.

        A mean-reduced loss's diagonals as they are (views, no product with 1).
        """
        if source not in self._diagonals:
            scale = self.mean_scale
            self._diagonals[source] = {
                name: diag.reshape(-1) if scale == 1 else diag.reshape(-1) * scale
                for name, diag in self["diagonals"][source].items()
            }
        return self._diagonals[source]

    def curvature_traces(self, source: str) -> LayerRows:
        """``[L]``: each parameter's ``tr(H_l)``, the sum of its curvature diagonal.

        Computed once per step and source for ``hess_trace`` and ``tic_trace``.
        """
        if source not in self._traces:
            diagonal = self.curvature_diagonal(source)
            traces = torch.stack([d.sum() for d in diagonal.values()])
            self._traces[source] = LayerRows(list(diagonal), traces)
        return self._traces[source]

    @functools.cached_property
    def _traces(self) -> dict[str, LayerRows]:
        return {}

    @functools.cached_property
    def _diagonals(self) -> dict[str, dict[str, Tensor]]:
        return {}


def _by_name(names: list[str], rows: Tensor) -> LayerRows:
    """``[L + 1, ...]`` rows as name -> row, the last under TOTAL."""
    return LayerRows([*names, TOTAL], rows)


def norm_rows(values: dict[str, Tensor]) -> Tensor:
    """``[L + 1]``: each tensor's Euclidean norm, and the norm of all of them last.

    A few reductions over flat buffers, or one ``torch._foreach_norm`` call
    (:func:`cockpit._flat_buffers.norm_rows`), never one call per tensor.
    """
    return with_total(_flat_buffers.norm_rows(values))


def with_total(norms: Tensor) -> Tensor:
    """``[L + 1]``: the ``[L]`` norms, and the norm of all of their tensors last."""
    return torch.cat([norms, torch.linalg.vector_norm(norms).reshape(1)])
