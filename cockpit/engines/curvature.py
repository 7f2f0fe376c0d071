"""Curvature from BackPACK's second-order extensions, in the user's backward pass.

Second-order extensions backpropagate a factor of the loss Hessian from the loss module
through every module to the parameters, so on a step with curvature quantities the
tracker hooks every leaf module of the model and the loss module (not only the layers
with parameters), and keeps each module's output (its address links a module's
backpropagated quantity to the next module's input). What each curvature source costs,
relative to one ordinary backward pass, on C classes (model outputs):

- ``ggn_mc`` (``DiagGGNMC``): a Monte-Carlo estimate of the GGN diagonal from one
  sampled label per sample; backpropagates ``[1, N, ...]``, about one extra backward.
- ``ggn_exact`` (``DiagGGNExact``): the exact GGN diagonal; backpropagates
  ``[C, N, ...]``, about C extra backward passes.
- ``hessian`` (``DiagHessian``): the exact Hessian diagonal; the GGN part plus residual
  terms at every non-linear activation, more than C extra backward passes.

Monte-Carlo sampling draws from the tracker's own generator: the global random stream
(and so the training) is left exactly as it would be without tracking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from backpack.extensions import (
    KFAC,
    KFLR,
    DiagGGNExact,
    DiagGGNMC,
    DiagHessian,
    SqrtGGNMC,
)
from backpack.extensions.backprop_extension import BackpropExtension
from torch import Tensor, nn

from cockpit.engines import ggn_gram
from cockpit.engines._conv_diag_ggn import PatchDiagGGNConv2d
from cockpit.engines._conv_kfac import PatchKFACConv2d
from cockpit.engines._derivatives import cheaper_derivatives
from cockpit.engines._savefield import module_table, take
from cockpit.engines._shared_mc import shared_extension, unpack
from cockpit.exceptions import ConfigurationError, UnsupportedModelError

#: Diagonal curvature sources: option value -> (extension class, savefield).
DIAGONALS: dict[str, tuple[type[BackpropExtension], str]] = {
    "ggn_mc": (DiagGGNMC, "diag_ggn_mc"),
    "ggn_exact": (DiagGGNExact, "diag_ggn_exact"),
    "hessian": (DiagHessian, "diag_h"),
}

#: Diagonal sources whose ``Conv2d`` weights take the patch route.
PATCHED_DIAGONALS = frozenset({"ggn_mc", "ggn_exact"})

#: Kronecker-factored curvature: option value -> (extension class, savefield).
KRONECKER: dict[str, tuple[type[BackpropExtension], str]] = {
    "kfac": (KFAC, "kfac"),
    "kflr": (KFLR, "kflr"),
}

#: Extensions that backpropagate a Monte-Carlo factor of the loss Hessian.
MONTE_CARLO = (DiagGGNMC, KFAC, SqrtGGNMC)


def check_choice(kind: str, value: str, valid: Iterable[str]) -> str:
    """Refuse an unknown option value with the valid ones in the message."""
    if value not in valid:
        raise ConfigurationError(
            f"Unknown {kind} {value!r}. Choose one of: {', '.join(sorted(valid))}."
        )
    return value


def kronecker_extension(name: str) -> BackpropExtension:
    """BackPACK's extension of the Kronecker kind ``name``.

    The input factors of ``Conv2d`` weights come from strided input patches
    (:mod:`cockpit.engines._conv_kfac`: the same values up to float rounding, with
    fewer multiply-adds and without ``F.unfold``).
    """
    extension = KRONECKER[name][0]()
    extension.set_module_extension(nn.Conv2d, PatchKFACConv2d(), overwrite=True)
    return extension


def diagonal_extension(name: str) -> BackpropExtension:
    """BackPACK's extension of the diagonal source ``name``.

    The GGN diagonals of ``Conv2d`` weights come from strided input patches
    (:mod:`cockpit.engines._conv_diag_ggn`: the same values up to float rounding,
    without ``F.unfold`` and without a ``[V, N, p, d]`` tensor).
    """
    extension = DIAGONALS[name][0]()
    if name in PATCHED_DIAGONALS:
        extension.set_module_extension(nn.Conv2d, PatchDiagGGNConv2d(), overwrite=True)
    return extension


@dataclass(frozen=True)
class GramRequest:
    """What ``ggn_top_eigen``/``curvature_noise`` need: one Gram extension.

    Attributes:
        exact: Exact loss-Hessian factor (C columns per sample) or Monte-Carlo.
        mc_samples: Columns per sample of the Monte-Carlo factor.
        samples: Use only the first ``samples`` samples of the batch (``None``: all).

    """

    exact: bool = False
    mc_samples: int = 1
    samples: int | None = None


@dataclass
class CurvatureRequest:
    """The union of the due curvature quantities' needs at one step."""

    diagonals: set[str] = field(default_factory=set)
    kronecker: set[str] = field(default_factory=set)
    gram: GramRequest | None = None
    #: Hutchinson probes for the Hessian diagonal (torch.func engine).
    probes: int = 0

    def __bool__(self) -> bool:
        return bool(self.diagonals or self.kronecker or self.gram)

    def add_gram(self, request: GramRequest, quantity: str) -> None:
        """Share one Gram extension between quantities with the same options."""
        if self.gram is not None and self.gram != request:
            raise ConfigurationError(
                f"'{quantity}' asks for the GGN factor with {request}, but another "
                f"quantity due at the same step asks for {self.gram}. Give "
                "ggn_top_eigen and curvature_noise the same exact/mc_samples/samples."
            )
        self.gram = request

    def extensions(self, batch_size: Callable[[], int]) -> list[BackpropExtension]:
        """One BackPACK extension per distinct need.

        Extensions that draw the same number of Monte-Carlo samples (``ggn_mc``,
        ``kfac``, a Monte-Carlo Gram factor) share one draw and one backpropagation
        (:mod:`cockpit.engines._shared_mc`). Max-pooling and ReLU layers
        backpropagate with autograd's kernels (:mod:`cockpit.engines._derivatives`).

        Args:
            batch_size: The step's batch size, once known (sub-sampling of the GGN
                factor).

        """
        exts = [diagonal_extension(name) for name in sorted(self.diagonals)]
        exts += [kronecker_extension(name) for name in sorted(self.kronecker)]
        if self.gram is not None:
            gram = self.gram
            exts.append(
                ggn_gram.gram_extension(
                    gram.exact, gram.mc_samples, gram.samples, batch_size
                )
            )
        by_samples: dict[int, list[BackpropExtension]] = {}
        for ext in map(cheaper_derivatives, exts):
            if isinstance(ext, MONTE_CARLO):
                by_samples.setdefault(ext.get_num_mc_samples(), []).append(ext)
        shared = [e for e in exts if not isinstance(e, MONTE_CARLO)]
        for mc_samples, consumers in sorted(by_samples.items()):
            shared += shared_extension(consumers, mc_samples)
        return shared


@dataclass
class Curvature:
    """What the second-order extensions left on the parameters at one step.

    Attributes:
        diagonals: Source -> parameter name -> ``[D_l]`` curvature diagonal of the
            batch loss as BackPACK computes it (mean or sum reduction).
        kronecker: Kind -> parameter name -> factors ``[B, A]`` (weights) or ``[B]``.
        gram: Parameter name -> :class:`~cockpit.engines.ggn_gram.GramPart`.
        estimates: Source -> how a stochastic diagonal was estimated (torch.func
            engine's Hutchinson estimator: probes and standard error).

    """

    diagonals: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    kronecker: dict[str, dict[str, list[Tensor]]] = field(default_factory=dict)
    gram: dict[str, ggn_gram.GramPart] = field(default_factory=dict)
    estimates: dict[str, Any] = field(default_factory=dict)


def collect(params: dict[str, nn.Parameter], request: CurvatureRequest) -> Curvature:
    """Take the results off the parameters (and remove them)."""
    unpack(params)
    found = Curvature()
    for name in request.diagonals:
        diagonals = take(params, DIAGONALS[name][1])
        # A parameter this backward did not reach has no curvature.
        found.diagonals[name] = {
            pname: diagonals[pname]
            if pname in diagonals
            else param.detach().new_zeros(param.shape)
            for pname, param in params.items()
        }
    for name in request.kronecker:
        found.kronecker[name] = take(params, KRONECKER[name][1])
    if request.gram is not None:
        found.gram = ggn_gram.collect(params)
    return found


def leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules without children: the ones BackPACK backpropagates through."""
    return [(n, m) for n, m in model.named_modules() if not list(m.children())]


def check_supported(
    model: nn.Module,
    loss_fn: nn.Module,
    extensions: dict[str, list[BackpropExtension]],
) -> None:
    """Refuse a model or loss a due curvature quantity's extension cannot handle.

    Args:
        model: The user's model.
        loss_fn: The loss module.
        extensions: Quantity name -> the extensions it runs.

    Raises:
        UnsupportedModelError: Naming the module, its type and the quantity.

    """
    modules = [*leaf_modules(model), ("loss_fn", loss_fn)]
    for quantity, exts in extensions.items():
        for ext in exts:
            known = module_table(ext)
            for name, module in modules:
                if type(module) not in known:
                    raise UnsupportedModelError(
                        f"'{quantity}' needs BackPACK's {type(ext).__name__}, which "
                        f"cannot backpropagate through module '{name}' "
                        f"({type(module).__name__}). It supports: "
                        f"{', '.join(sorted(t.__name__ for t in known))}. Replace the "
                        f"module, or drop the quantity (quantities={{'{quantity}': "
                        "None}) or choose a preset without it."
                    )


CHAIN_BROKEN = (
    "A curvature quantity's BackPACK extension found no curvature backpropagated to "
    "module '{module}' ({kind}). BackPACK's second-order extensions need the forward "
    "pass to be a chain of modules: an operation outside a module between two layers "
    "(a functional call such as torch.tanh or F.relu, a residual 'x + f(x)', a "
    "reshape with torch.flatten) breaks the chain. Use module versions (nn.Tanh(), "
    "nn.Flatten()), or drop the curvature quantities for this model."
)


__all__ = [
    "CHAIN_BROKEN",
    "DIAGONALS",
    "KRONECKER",
    "PATCHED_DIAGONALS",
    "Curvature",
    "CurvatureRequest",
    "GramRequest",
    "check_choice",
    "check_supported",
    "collect",
    "diagonal_extension",
    "kronecker_extension",
    "leaf_modules",
]
