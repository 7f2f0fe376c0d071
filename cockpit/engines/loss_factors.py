"""The loss side of the torch.func engine: per-sample losses and Hessian factors.

For one sample with loss input ``f`` (the loss module's input, batch dimension 1) and
target ``y``, the per-sample loss is ``l_n = c * sum_e loss_e(f_e, y_e)`` over the
sample's E elements (``c = 1/E`` for a mean-reduced loss, ``1`` for a summed one), as
in :class:`~cockpit._loss_capture.LossCapture`. Its Hessian w.r.t. ``f`` is
block-diagonal over elements, ``c * Lambda_e``, and the GGN of the sample is
``J^T (c Lambda) J = (J^T S)(J^T S)^T`` for any factor ``S S^T = c Lambda`` (exact) or
``E[S S^T] = c Lambda`` (Monte-Carlo). :class:`LossFactors` gives the columns of ``S``:

- ``CrossEntropyLoss`` (class axis 1): ``Lambda_e = diag(p) - p p^T``,
  ``p = softmax(f_e)``; exact columns ``sqrt(p_k) (e_k - p)`` per class k and element;
  a Monte-Carlo column ``p - onehot(y_hat)``, ``y_hat ~ Categorical(p)`` per element.
- ``MSELoss`` (``(f - y)^2``): ``Lambda_e = 2``; exact ``sqrt(2)`` per element;
  Monte-Carlo ``sqrt(2) eps``, ``eps ~ N(0, 1)`` per element.
- ``BCEWithLogitsLoss``: ``Lambda_e = s (1 - s)``, ``s = sigmoid(f_e)``; exact
  ``sqrt(s (1 - s))``; Monte-Carlo ``s - y_hat``, ``y_hat ~ Bernoulli(s)``.

Each column is scaled by ``sqrt(c)``. The random numbers come in from outside (drawn
from the tracker's generator), so the functions are pure and ``vmap`` runs them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from cockpit.exceptions import UnsupportedModelError

#: Loss modules whose Hessian factor is known here.
FACTORED_LOSSES = (nn.CrossEntropyLoss, nn.MSELoss, nn.BCEWithLogitsLoss)


def unreduced(loss_fn: nn.Module, f: Tensor, target: object) -> Tensor:
    """The loss module's element-wise loss ``[N, ...]`` (``reduction="none"``).

    The module itself computes it, with its own options (``ignore_index``,
    ``label_smoothing``, ...), its reduction switched off for the call.
    """
    reduction, loss_fn.reduction = loss_fn.reduction, "none"
    try:
        return loss_fn.forward(f, target)
    finally:
        loss_fn.reduction = reduction


def batch_normalizer(loss_fn: nn.Module, target: object) -> Tensor | None:
    """``Z``, the count a mean-reduced loss divides its summed elements by, if special.

    ``CrossEntropyLoss`` and ``NLLLoss`` with class-index targets average over the
    elements whose target is not ``ignore_index``: ``L = sum_{n,e} loss_{n,e} / Z``
    with ``Z`` the number of kept elements. ``None`` for every other loss. (Class
    weights with ``reduction="mean"`` are refused when the Cockpit is created.)
    """
    if not isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return None
    if loss_fn.reduction != "mean" or not isinstance(target, Tensor):
        return None
    if target.is_floating_point():  # class probabilities: averaged over samples
        return None
    return (target != loss_fn.ignore_index).sum()


def per_sample_losses(
    elementwise: Tensor, mean: bool, normalizer: Tensor | None
) -> Tensor:
    """``[N]`` per-sample losses ``l_n`` whose mean (or sum) is the user's loss.

    A summed loss: ``l_n = sum_e loss_{n,e}``. A mean-reduced one: ``l_n = mean_e
    loss_{n,e}``, or, where the loss divides by the count ``Z`` of targets it does not
    ignore (:func:`batch_normalizer`), ``l_n = N sum_e loss_{n,e} / Z``, so that
    ``mean_n l_n = L`` holds exactly. Where no target is ignored the two agree, and the
    first is used (chosen on the device: no host synchronization).

    Args:
        elementwise: ``[N, ...]``, the unreduced loss.
        mean: The loss is mean-reduced.
        normalizer: ``Z`` of the batch, or ``None``.

    """
    n = elementwise.shape[0]
    per_sample = elementwise.reshape(n, -1)
    if not mean:
        return per_sample.sum(1)
    plain = per_sample.mean(1)
    if normalizer is None:
        return plain
    normalized = per_sample.sum(1) * (n / normalizer.to(per_sample.dtype))
    return torch.where(normalizer == per_sample.numel(), plain, normalized)


class LossFactors:
    """Per-sample loss and GGN factor columns of one loss module.

    Args:
        loss_fn: The user's loss module.
        mean_reduction: It averages over elements (else sums).

    """

    def __init__(self, loss_fn: nn.Module, mean_reduction: bool):
        self.loss_fn = loss_fn
        self.mean = mean_reduction
        self._kept: tuple[Tensor, Tensor, int] | None = None

    def prepare(self, target: object, batch_size: int) -> None:
        """Take the batch's count of targets not ignored, for the replay.

        Per-sample losses of the replay, one sample at a time, then equal those of
        :func:`per_sample_losses` on the whole batch.
        """
        z = batch_normalizer(self.loss_fn, target) if self.mean else None
        if z is None:
            self._kept = None
            return
        assert isinstance(target, Tensor)  # batch_normalizer checked it
        self._kept = (z == target.numel(), z, batch_size)

    def sample_loss(self, f: Tensor, target: Tensor) -> Tensor:
        """``l_n`` of one sample: ``f`` and ``target`` have batch dimension 1."""
        elementwise = unreduced(self.loss_fn, f, target)
        if not self.mean:
            return elementwise.sum()
        if self._kept is None:
            return elementwise.mean()
        plain, z, n = self._kept
        scale = n / z.to(elementwise.dtype)
        return torch.where(plain, elementwise.mean(), elementwise.sum() * scale)

    def batch_losses(self, f: Tensor, target: Tensor) -> Tensor:
        """``[N]`` per-sample losses ``l_n`` of the whole batch's loss input ``f``."""
        elementwise = unreduced(self.loss_fn, f, target)
        normalizer = batch_normalizer(self.loss_fn, target) if self.mean else None
        return per_sample_losses(elementwise, self.mean, normalizer)

    def check_factored(self, why: str) -> None:
        """Refuse a loss whose Hessian factor is not known here, naming ``why``."""
        loss_fn = self.loss_fn
        problem = None
        if not isinstance(loss_fn, FACTORED_LOSSES):
            problem = f"its Hessian factor is known only for {_names()}"
        elif getattr(loss_fn, "label_smoothing", 0.0):
            problem = "label_smoothing changes the loss Hessian"
        elif getattr(loss_fn, "weight", None) is not None or (
            getattr(loss_fn, "pos_weight", None) is not None
        ):
            problem = "class weights change the loss Hessian"
        if problem is not None:
            raise UnsupportedModelError(
                f"{why} needs the generalized Gauss-Newton matrix of the loss "
                f"{type(loss_fn).__name__}, but {problem}. Use curvature='hessian' "
                "(Hessian-vector products) for the trace and TIC, or drop the "
                "quantity."
            )

    def noise_shape(self, f_shape: torch.Size, columns: int) -> tuple[int, ...]:
        """Shape of the random numbers for ``columns`` Monte-Carlo columns per sample.

        Args:
            f_shape: The batch's loss input shape ``[N, ...]``.
            columns: M.

        Returns:
            ``[N, M, ...]``: per sample and column, one number per element (CE: per
            element without the class axis).

        """
        n, *rest = f_shape
        if isinstance(self.loss_fn, nn.CrossEntropyLoss):
            rest = rest[1:]
        return (n, columns, *rest)

    def draw(
        self, shape: tuple[int, ...], like: Tensor, gen: torch.Generator
    ) -> Tensor:
        """The random numbers of :meth:`mc_columns`: uniform (CE, BCE) or normal."""
        if isinstance(self.loss_fn, nn.MSELoss):
            return torch.randn(
                shape, generator=gen, device=like.device, dtype=like.dtype
            )
        return torch.rand(shape, generator=gen, device=like.device, dtype=like.dtype)

    def _scale(self, f: Tensor) -> float:
        elements = f[0].numel()
        if isinstance(self.loss_fn, nn.CrossEntropyLoss):
            elements //= f.shape[1]
        return 1.0 / math.sqrt(elements) if self.mean else 1.0

    def _mask(self, f: Tensor, target: Tensor) -> Tensor | float:
        """CE: zero for elements whose target is ``ignore_index`` (no loss there)."""
        loss_fn = self.loss_fn
        if isinstance(loss_fn, nn.CrossEntropyLoss) and not target.is_floating_point():
            return (target != loss_fn.ignore_index).to(f.dtype).unsqueeze(1)
        return 1.0

    def mc_columns(self, f: Tensor, target: Tensor, noise: Tensor) -> Tensor:
        """``[M, *f.shape]`` Monte-Carlo factor columns of one sample.

        Args:
            f: ``[1, ...]``, the sample's loss input (detached).
            target: ``[1, ...]``, its target.
            noise: ``[M, ...]`` from :meth:`draw` for this sample.

        """
        scale = self._scale(f)
        if isinstance(self.loss_fn, nn.MSELoss):
            return noise.unsqueeze(1) * (math.sqrt(2.0) * scale)
        if isinstance(self.loss_fn, nn.BCEWithLogitsLoss):
            s = torch.sigmoid(f)
            return (s - (noise.unsqueeze(1) < s).to(f.dtype)) * scale
        p = torch.softmax(f, dim=1)  # [1, C, ...]
        cumulative = p.cumsum(dim=1).unsqueeze(0)  # [1, 1, C, ...]
        drawn = (cumulative < noise.unsqueeze(1).unsqueeze(2)).sum(2, keepdim=True)
        classes = torch.arange(f.shape[1], device=f.device).view(
            1, 1, -1, *([1] * (f.dim() - 2))
        )
        onehot = (classes == drawn.clamp(max=f.shape[1] - 1)).to(f.dtype)
        return (p.unsqueeze(0) - onehot) * (self._mask(f, target) * scale)

    def exact_columns(self, f: Tensor, target: Tensor) -> Tensor:
        """``[K, *f.shape]`` exact factor columns of one sample.

        K = C E for cross-entropy (C classes, E elements), E otherwise. The columns
        of different elements do not overlap; E C columns of size C E each, so a
        long sequence output makes this large (the exact GGN costs that much).
        """
        scale = self._scale(f)
        if isinstance(self.loss_fn, nn.CrossEntropyLoss):
            classes = f.shape[1]
            p = torch.softmax(f, dim=1).reshape(classes, -1).T  # [E, C]
            root = p.sqrt()
            block = torch.diag_embed(root) - p.unsqueeze(2) * root.unsqueeze(1)
            elements = p.shape[0]
            eye = torch.eye(elements, device=f.device, dtype=f.dtype)
            # columns[e, k] holds block[e, :, k] at element e: [E, C, C, E].
            columns = torch.einsum("eck,ef->ekcf", block, eye)
            columns = columns.reshape(elements * classes, 1, *f.shape[1:])
            return columns * (self._mask(f, target) * scale)
        if isinstance(self.loss_fn, nn.MSELoss):
            curvature = torch.full_like(f, 2.0)
        else:
            s = torch.sigmoid(f)
            curvature = s * (1 - s)
        diagonal = torch.diag_embed(curvature.reshape(-1).sqrt() * scale)
        return diagonal.reshape(-1, *f.shape)


def _names() -> str:
    return ", ".join(t.__name__ for t in FACTORED_LOSSES)


__all__ = ["FACTORED_LOSSES", "LossFactors"]
