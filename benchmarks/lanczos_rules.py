"""How many Hessian-vector products each stopping rule of ``hess_max_ev`` takes, and
how far from lambda_max it stops, on a benchmark problem's real Hessians.

Trains ``--steps`` SGD steps of the problem with ``hess_max_ev`` (its default start,
the step's gradient) solved far past convergence (``--products`` products, no
stopping rule), keeping every product. The ``m``-product Krylov space's projection
``T = Q^T H Q`` (``[m, m]``) holds everything Lanczos knows after ``m`` products, and
Lanczos on ``T`` from ``e_1`` repeats the solve's Ritz values and residuals; so each
rule is replayed offline by :func:`cockpit.stats.eigen.lanczos` itself, with its own
stopping code. The reference is the top eigenvalue of the whole ``T`` (a lower bound
of lambda_max that the last products no longer move). Per rule and step: the
products, the relative error of the value and the logged residual bound relative to
the value::

    .venv/bin/python benchmarks/lanczos_rules.py --problem 3c3d --steps 6
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Callable

import torch
from _overhead.configs import LR, Run
from _overhead.problems import PROBLEMS, make_problem
from torch import Tensor, nn

import cockpit
from cockpit.engines import eigen_solve
from cockpit.exceptions import CockpitWarning
from cockpit.quantities import HessMaxEv
from cockpit.stats.eigen import lanczos

#: Rule name -> (tol, max_error), as ``HessMaxEv`` takes them.
RULES = {
    "settled (tol=1e-3), no max_error": (1e-3, None),
    "max_error=0.02": (1e-3, 0.02),
    "max_error=0.03": (1e-3, 0.03),
    "max_error=0.04": (1e-3, 0.04),
    "max_error=0.05": (1e-3, 0.05),
}


def recorded_projections(name: str, steps: int, products: int) -> list[Tensor]:
    """``T = Q^T H Q`` of each step's Krylov space of ``products`` products."""
    problem = make_problem(name, torch.device("cpu"))
    model = problem.make_model()
    model.load_state_dict(problem.initial)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    original = eigen_solve._SOLVERS["lanczos"]
    found: list[Tensor] = []

    def recording(matvec: Callable[[Tensor], Tensor], start: Tensor, *args, **kw):
        basis, images = [], []

        def kept(v: Tensor) -> Tensor:
            image = matvec(v)
            basis.append(v.clone())
            images.append(image.clone())
            return image

        result = original(kept, start, *args, **kw)
        q, hq = torch.stack(basis).double(), torch.stack(images).double()
        found.append(0.5 * (q @ hq.T + hq @ q.T))
        return result

    # Capped on purpose: no stopping rule, every product kept.
    capped = HessMaxEv(tol=1e-30, max_iter=products, max_error=None)
    tracking = {
        "preset": None,
        "quantities": {"hess_max_ev": capped},
        "loss_input": problem.loss_input,
    }
    eigen_solve._SOLVERS["lanczos"] = recording
    try:
        with tempfile.TemporaryDirectory() as logdir, warnings.catch_warnings():
            warnings.simplefilter("ignore", CockpitWarning)
            ck = cockpit.Cockpit(model, loss_fn, optimizer, logdir=logdir, **tracking)
            run = Run("recorded", model, loss_fn, optimizer, ck, problem.loss_input)
            for _ in range(steps):
                run.step(problem.batches)
            ck.close()
    finally:
        eigen_solve._SOLVERS["lanczos"] = original
    return found


def replay(projection: Tensor, tol: float, max_error: float | None):
    """The rule's solve, repeated on the recorded Krylov space."""
    start = torch.zeros(projection.shape[0], dtype=projection.dtype)
    start[0] = 1.0
    return lanczos(
        lambda v: projection @ v,
        start,
        tol,
        projection.shape[0],
        max_error=max_error,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--problem", choices=PROBLEMS, default="3c3d")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--products", type=int, default=24)
    args = parser.parse_args()
    projections = recorded_projections(args.problem, args.steps, args.products)
    print(
        f"`benchmarks/lanczos_rules.py --problem {args.problem} --steps {args.steps} "
        f"--products {args.products}`; per step: products, relative error of the "
        "value against the reference, logged residual / value.\n"
    )
    print("| rule | products per solve | largest error | per step |")
    print("|---|---:|---:|---|")
    for rule, (tol, max_error) in RULES.items():
        cells, products, errors = [], [], []
        for projection in projections:
            reference = torch.linalg.eigvalsh(projection)[-1].item()
            result = replay(projection, tol, max_error)
            error = (reference - result.value) / abs(reference)
            products.append(result.iterations)
            errors.append(error)
            bound = result.residual / abs(result.value)
            cells.append(f"{result.iterations}: {error:.1e} (<= {bound:.1e})")
        print(
            f"| {rule} | {sum(products) / len(products):.2f} | {max(errors):.1e} | "
            f"{'; '.join(cells)} |"
        )


if __name__ == "__main__":
    main()
