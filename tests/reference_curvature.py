"""Brute-force curvature from torch alone: exact Hessians and GGNs as ``D x D`` matrices.

Nothing here uses the tracker's code or BackPACK. The Hessian comes from
``torch.autograd.functional.hessian`` of the mean loss as a function of the flat
parameter vector; the GGN from per-sample Jacobians of the model output
(``torch.func.jacrev``) and the loss Hessian w.r.t. the output:
``G_n = J_n^T (d^2 l_n / d f^2) J_n``, ``GGN = (1/N) sum_n G_n``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev

from tests.problems import Problem
from tests.reference import per_sample_losses


def layout(model: nn.Module) -> dict[str, slice]:
    """Parameter name -> its slice of the flat parameter vector."""
    out, start = {}, 0
    for name, p in model.named_parameters():
        out[name] = slice(start, start + p.numel())
        start += p.numel()
    return out


def unflatten(model: nn.Module, flat: Tensor) -> dict[str, Tensor]:
    return {
        name: flat[piece].view_as(p)
        for (name, p), piece in zip(
            model.named_parameters(), layout(model).values(), strict=True
        )
    }


def flatten(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def hessian(model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``[D, D]`` Hessian of the mean loss ``(1/N) sum_n l_n``."""

    def mean_loss(flat: Tensor) -> Tensor:
        out = functional_call(model, unflatten(model, flat), (x,))
        return per_sample_losses(loss_fn, out, y).mean()

    return torch.autograd.functional.hessian(mean_loss, flatten(model), vectorize=True)


def per_sample_ggn(
    model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor
) -> Tensor:
    """``[N, D, D]``: ``G_n = J_n^T H_n J_n`` for each sample's loss ``l_n``."""
    flat = flatten(model)
    blocks = []
    for n in range(x.shape[0]):
        xn, yn = x[n : n + 1], y[n : n + 1]

        def output(p: Tensor, xn=xn) -> Tensor:
            return functional_call(model, unflatten(model, p), (xn,)).reshape(-1)

        jac = jacrev(output)(flat)  # [C, D]
        with torch.no_grad():
            out = model(xn)

        def sample_loss(f: Tensor, yn=yn, shape=out.shape) -> Tensor:
            return per_sample_losses(loss_fn, f.view(shape), yn)[0]

        loss_hessian = torch.autograd.functional.hessian(sample_loss, out.reshape(-1))
        blocks.append(jac.T @ loss_hessian @ jac)
    return torch.stack(blocks)


def ggn(model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``[D, D]`` GGN of the mean loss."""
    return per_sample_ggn(model, loss_fn, x, y).mean(0)


def flat_per_sample_grads(per_sample: dict[str, Tensor]) -> Tensor:
    """``[N, D]`` from ``{name: [N, *shape]}`` in parameter order."""
    n = next(iter(per_sample.values())).shape[0]
    return torch.cat([g.reshape(n, -1) for g in per_sample.values()], dim=1)


def top_eigen(matrix: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k largest eigenvalues (descending) and eigenvectors ``[D, k]``."""
    values, vectors = torch.linalg.eigh(matrix)
    return values.flip(0)[:k], vectors.flip(1)[:, :k]


def at_step(problem: Problem, params: dict[str, Tensor], step: int):
    """A fresh copy of the problem's model with ``params``, its loss and the batch."""
    model, loss_fn = problem.make()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
    x, y = problem.batch(step)
    return model, loss_fn, x, y


def per_layer_sums(model: nn.Module, values: Tensor) -> dict[str, Tensor]:
    """``{name: sum of values over the parameter's entries}`` plus ``"total"``."""
    sums = {name: values[piece].sum() for name, piece in layout(model).items()}
    return {**sums, "total": values.sum()}


def batch_coupled_ggn(
    model: nn.Module, loss_fn: nn.Module, x: Tensor, y: Tensor
) -> Tensor:
    """``[D, D]`` GGN ``J^T H_z J`` of the mean loss through the whole batch.

    ``J`` is the Jacobian of the whole batch's output (BatchNorm in training mode
    couples the samples, so sample n's output depends on every sample), ``H_z`` the
    mean loss's Hessian w.r.t. that output. Runs on a copy of the model.
    """
    model = copy.deepcopy(model)
    flat = flatten(model)

    def output(p: Tensor) -> Tensor:
        return functional_call(model, unflatten(model, p), (x,)).reshape(-1)

    jac = torch.autograd.functional.jacobian(output, flat)  # [N C, D]
    with torch.no_grad():
        out = functional_call(model, unflatten(model, flat), (x,))

    def mean_loss(f: Tensor) -> Tensor:
        return per_sample_losses(loss_fn, f.view(out.shape), y).mean()

    loss_hessian = torch.autograd.functional.hessian(mean_loss, out.reshape(-1))
    return jac.T @ loss_hessian @ jac
