"""BackPACK's module derivatives swapped for cheaper ones that give the same values.

Second-order extensions backpropagate their factor through every module with the
module's derivatives object (``module_extension.derivatives``). For the modules
below the tracker substitutes a subclass that computes the same transposed Jacobian
with less work:

- ``MaxPool2d``/``MaxPool3d``: the indices autograd saved and its backward kernel
  (:mod:`cockpit.engines._saved_pool_indices`);
- ``ReLU``: autograd's fused ReLU backward kernel
  (:mod:`cockpit.engines._relu_jacobian`).
"""

from __future__ import annotations

from backpack.core.derivatives.maxpool2d import MaxPool2DDerivatives
from backpack.core.derivatives.maxpool3d import MaxPool3DDerivatives
from backpack.core.derivatives.relu import ReLUDerivatives
from backpack.extensions.backprop_extension import BackpropExtension
from torch import nn

from cockpit.engines._relu_jacobian import FusedReLUDerivatives
from cockpit.engines._saved_pool_indices import SavedIndexMaxPool2d, SavedIndexMaxPool3d
from cockpit.engines._savefield import module_table

__all__ = ["REPLACEMENTS", "cheaper_derivatives"]

#: Module class -> (BackPACK's derivatives class, the replacement).
REPLACEMENTS = {
    nn.MaxPool2d: (MaxPool2DDerivatives, SavedIndexMaxPool2d),
    nn.MaxPool3d: (MaxPool3DDerivatives, SavedIndexMaxPool3d),
    nn.ReLU: (ReLUDerivatives, FusedReLUDerivatives),
}


def cheaper_derivatives(extension: BackpropExtension) -> BackpropExtension:
    """Give ``extension``'s module extensions the derivatives of :data:`REPLACEMENTS`.

    Only module extensions holding exactly BackPACK's own derivatives class are
    changed (in place: each extension object has its own module extension
    instances). Returns ``extension``.
    """
    table = module_table(extension)
    for module_class, (original, replacement) in REPLACEMENTS.items():
        module_extension = table.get(module_class)
        if type(getattr(module_extension, "derivatives", None)) is original:
            module_extension.derivatives = replacement()
    return extension
