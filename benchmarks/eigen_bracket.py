"""How often ``hess_max_ev``'s bracket ``[value, value + residual]`` holds lambda_max.

For every problem of ``tests/problems.py`` and two tracker seeds, three SGD steps
with ``hess_max_ev`` under each stopping rule (the settled estimate alone, and the
residual rule with ``max_error`` from 0.05 to 0.02), against the exact Hessian's spectrum
(``torch.autograd.functional.hessian``, float64). Per rule it counts the solves,
the Hessian-vector products, the solves whose residual misses *every* eigenvalue
(never, if the residual is right: it bounds the distance to some eigenvalue) and the
solves whose bracket misses ``lambda_max`` (possible for every rule: a Krylov space
that has not yet seen the top eigenvector, or a cluster of top eigenvalues within
the residual), and names the solves whose bracket missed::

    .venv/bin/python benchmarks/eigen_bracket.py
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import torch

RULES = {
    "settled (tol=1e-3), max_error=None": None,
    "max_error=0.05": 0.05,
    "max_error=0.04 (default)": 0.04,
    "max_error=0.03": 0.03,
    "max_error=0.02": 0.02,
}
STEPS = 3


def _spectra(problem, refs) -> list[torch.Tensor]:
    """The exact Hessian's eigenvalues at each step of the run."""
    from tests.reference_curvature import at_step, hessian

    spectra = []
    for step, ref in enumerate(refs):
        model, loss_fn, x, y = at_step(problem, ref.params, step)
        spectra.append(torch.linalg.eigvalsh(hessian(model, loss_fn, x, y)))
    return spectra


def _count(
    run, spectra: list[torch.Tensor], found: dict[str, int], where: str
) -> list[str]:
    """Add the run's solves to ``found``; a line for each bracket that missed."""
    from tests.quantities.tracking import logged

    misses = []
    for step, values in enumerate(spectra):
        value = logged(run, "hess_max_ev", step)
        residual = logged(run, "hess_max_ev.residual", step)
        top = values[-1].item()
        found["solves"] += 1
        found["products"] += int(logged(run, "hess_max_ev.iterations", step))
        found["off"] += (values - value).abs().min().item() > residual
        missed = not (value <= top + 1e-10 and top - value <= residual)
        found["missed"] += missed
        if missed:
            top3 = ", ".join(f"{v:.4g}" for v in values[-3:].flip(0).tolist())
            misses.append(
                f"{where}, step {step}: value {value:.4g}, residual {residual:.2g}, "
                f"top eigenvalues {top3}"
            )
    return misses


def main() -> None:
    from cockpit.quantities import HessMaxEv
    from tests.problems import PROBLEMS
    from tests.quantities.tracking import tracked_run

    warnings.simplefilter("ignore")
    counts = {r: {"solves": 0, "products": 0, "off": 0, "missed": 0} for r in RULES}
    misses: list[str] = []
    for problem in PROBLEMS:
        for seed in (0, 1):
            spectra: list[torch.Tensor] = []
            for rule, max_error in RULES.items():
                quantity = HessMaxEv(max_error=max_error)
                with tempfile.TemporaryDirectory() as logdir:
                    run, refs = tracked_run(
                        problem,
                        Path(logdir),
                        {"hess_max_ev": quantity},
                        steps=STEPS,
                        seed=seed,
                    )
                    spectra = spectra or _spectra(problem, refs)
                    where = f"{rule}: {problem.name}, seed {seed}"
                    misses += _count(run, spectra, counts[rule], where)
    print(
        "| rule | solves | products per solve | residual off every eigenvalue "
        "| bracket misses lambda_max |"
    )
    print("|---|---:|---:|---:|---:|")
    for rule, found in counts.items():
        print(
            f"| {rule} | {found['solves']} | {found['products'] / found['solves']:.2f} "
            f"| {found['off']} | {found['missed']} |"
        )
    print("\nBrackets that missed lambda_max:" if misses else "")
    for line in misses:
        print(f"- {line}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
