"""``ggn_operator`` against ``J^T H_z J`` built from explicit Jacobians (float64)."""

import torch
from torch import nn
from torch.func import functional_call, jacrev

from cockpit.engines.hessian import ggn_operator


def _setup(loss_fn: nn.Module):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    target = torch.randn(6, 3, dtype=torch.float64)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    sizes = [p.numel() for p in params]

    def output_of(flat: torch.Tensor) -> torch.Tensor:
        pieces = [v.view_as(p) for v, p in zip(flat.split(sizes), params, strict=True)]
        return functional_call(model, dict(zip(names, pieces, strict=True)), (x,))

    flat = torch.cat([p.detach().reshape(-1) for p in params])
    jac = jacrev(output_of)(flat).reshape(-1, flat.numel())  # [N C, D]
    z = output_of(flat).detach()
    loss_hessian = jacrev(jacrev(lambda out: loss_fn(out.view_as(z), target)))(
        z.reshape(-1)
    )
    exact = jac.T @ loss_hessian @ jac
    products = ggn_operator(model(x), lambda out: loss_fn(out, target), params, 0.5)
    return exact, products, flat.numel()


def test_products_match_the_explicit_ggn():
    exact, products, dim = _setup(nn.MSELoss())
    vectors = torch.randn(dim, 4, dtype=torch.float64)
    got = torch.stack([products(v) for v in vectors.T], dim=1)
    torch.testing.assert_close(got, 0.5 * exact @ vectors, rtol=1e-10, atol=1e-12)


def test_a_loss_with_zero_curvature_gives_zero_products():
    """L1's second derivative vanishes almost everywhere: the GGN is zero."""
    exact, products, dim = _setup(nn.L1Loss())
    assert torch.count_nonzero(exact) == 0
    assert torch.count_nonzero(products(torch.randn(dim, dtype=torch.float64))) == 0
