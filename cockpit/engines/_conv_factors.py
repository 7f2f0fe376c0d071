"""``Conv2d`` weights' per-sample statistics from the layer's two factors.

The per-sample weight gradient of a convolution is ``g_n = B_n^T A_n`` (``[p, d]``):
``A_n = unfold(x_n)^T`` (``[T, d]``, ``d = C_in k^2`` input patches at the ``T``
output positions) and ``B_n`` (``[T, p]``), the output gradient. The hook keeps the
two factors (:class:`ConvFactors`); they are reduced once the backward pass is over
(:meth:`ConvFactors.reduce`), when the layer's mini-batch gradient ``g`` is known from
autograd. So the tracker never recomputes ``g`` (one weight gradient, ``N T p d``
multiply-adds, as much as forming all ``g_n``), and ``g_n . g`` needs nothing extra.

The ``g_n`` are formed a chunk of samples at a time (patches and a batched product,
``N T p d``) and reduced at once (:class:`ChunkReducer`), so the ``[N, p d]``
per-sample gradients exist at once only where alpha keeps them for a projection
known after ``optimizer.step()`` (:func:`reduce_all`, at most
:data:`KEEP_ELEMENTS` numbers per step). Why not the "ghost norm"
``||g_n||^2 = <A_n A_n^T, B_n B_n^T>`` (Li et al. 2021, Bu et al. 2023,
``N T^2 (d + p)``) where it is cheaper than forming ``g_n``: the statistics always
include ``g_n . g`` (:class:`LayerStats` ``dots``, which the gradient tests read), and
that costs ``N T p d`` without ``g_n`` (``sum_t b_nt . (g a_nt)``, one forward
convolution), as much as forming the ``g_n``, from which the norms then come nearly
free; and ``economy``'s GSNR and histogram need the elements of ``g_n`` anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cockpit.engines import layer_stats
from cockpit.engines._chunk_reducer import ChunkReducer
from cockpit.engines._sample_request import (
    LayerStats,
    SampleRequest,
    draw_positions,
    widen,
)

__all__ = [
    "CHUNK_MULTIPLE",
    "CPU_CHUNK_SCALE",
    "KEEP_ELEMENTS",
    "ConvFactors",
    "chunk_samples",
    "factor_route",
    "kept_layers",
    "pad_input",
    "patch_view",
    "reduce_all",
    "unfold_patches",
]

#: Per-sample gradient numbers a step may keep for projections known only after
#: ``optimizer.step()`` (alpha), all layers together: 32 MB in float32.
KEEP_ELEMENTS = 2**23

#: The convolution routes' temporaries on the CPU hold up to this many times
#: :data:`~cockpit.engines.layer_stats.CHUNK_ELEMENTS` (2**21 numbers, 8 MB in
#: float32): half as many chunks, so half the operations and the intra-op pool's
#: wake-ups per layer. On 3c3d's convolutions with two threads, 5.6 ms less of the
#: training thread's CPU per step than 2**20 (together with :data:`CHUNK_MULTIPLE`),
#: while 2**22 took longer (``benchmarks/results/econ3c3d/``).
CPU_CHUNK_SCALE = 2

#: Samples per chunk are a multiple of this where the bound allows. The batched
#: product splits a chunk's samples over the intra-op threads: 9 samples leave one of
#: two threads 5 against 4 (on 3c3d's third convolution 71 against 54 µs of CPU per
#: sample; 61 and 54 with 8). A fixed multiple, not the thread count, so that the
#: chunks, and the order of the float sums, do not depend on the threads.
CHUNK_MULTIPLE = 8


def factor_route(module: nn.Conv2d) -> bool:
    """Whether the weight takes the factor route: if it is ungrouped.

    With the patches as one strided copy, the factor route took less CPU time than
    BackPACK's grouped convolution on every convolution measured, up to ``T = 56 p``
    (``benchmarks/conv_routes.py``; ``benchmarks/results/conv/README.md``).
    """
    return module.groups == 1


@dataclass
class ConvFactors:
    """One ``Conv2d`` weight's input and scaled output gradient, reduced later.

    Attributes:
        x: ``[N, C_in, H, W]``, the layer's input, detached.
        delta: ``[N, p, T]``, BackPACK's output gradients (of the batch loss).
        scale: From ``delta`` to the per-sample losses' output gradients, applied
            per chunk to the smaller of ``delta`` (``p T`` per sample) and the
            per-sample gradients (``p d``), not to all of ``delta`` up front
            (on 3c3d's first layer a 25 MB copy per step for 2.5 MB of products).
        param: The ``[p, C_in, k_h, k_w]`` weight.
        stride: The convolution's stride.
        dilation: Its dilation.
        padding: Its padding in ``F.pad``'s order (``padding="same"`` resolved).
        padding_mode: ``F.pad``'s mode (``"constant"`` for zeros).
        positions: The histogram sample's parameter positions, drawn when the
            factors arrive (in the order of the backward pass, as every layer's).
        rounding: See :class:`~cockpit.engines._sample_request.LayerStats`.

    """

    x: Tensor
    delta: Tensor
    scale: int | Tensor
    param: Tensor
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    padding_mode: str
    positions: Tensor | None
    rounding: float

    @classmethod
    def arrive(
        cls,
        module: nn.Conv2d,
        delta: Tensor,
        request: SampleRequest,
        scale: int | Tensor,
    ) -> ConvFactors:
        """The factors of ``module``'s weight from its output gradient ``delta``.

        Args:
            module: The convolution (its stored ``input0``).
            delta: ``[N, p, H_out, W_out]``, BackPACK's output gradient.
            request: What to compute (whether a histogram draws positions now).
            scale: From BackPACK's output gradients to the per-sample losses'.

        """
        weight = module.weight
        (x, delta), rounding = widen([module.input0.detach(), delta], weight.dtype)
        positions = None
        if request.hist_budget is not None:
            n = delta.shape[0]
            positions = draw_positions(request, n, weight.numel(), delta.device)
        mode = module.padding_mode
        return cls(
            x,
            delta.detach().flatten(2),
            scale,
            weight,
            module.stride,
            module.dilation,
            # Conv2d's own F.pad arguments: "same" resolved, in F.pad's order.
            tuple(module._reversed_padding_repeated_twice),
            "constant" if mode == "zeros" else mode,
            positions,
            rounding,
        )

    @property
    def positions_per_sample(self) -> int:
        """T, the output positions: a later projection's cost per kept element."""
        return self.delta.shape[2]

    @property
    def elements(self) -> int:
        """``N D_l``, the numbers of all per-sample gradients."""
        return self.delta.shape[0] * self.param.numel()

    @torch.no_grad()
    def reduce(
        self, grad: Tensor, request: SampleRequest, keep: bool = False
    ) -> LayerStats:
        """The layer's statistics, given its mini-batch gradient.

        ``g_n . g`` uses ``grad`` (autograd's); the logged ``LayerStats.grad`` is
        the mean of the ``g_n`` formed here, so that it checks the hooks against
        ``.grad`` independently (``moves._verify``). A direction known only later
        is projected by one forward convolution with it as the weight
        (``g_n . V = <delta_n, conv(x_n, V)>``, ``N T p d``), or, with ``keep``, on
        the kept ``[N, D_l]`` per-sample gradients (``N D_l``).

        Args:
            grad: ``[p d]``, the mini-batch gradient ``g = (1/N) sum_n g_n``.
            request: What to compute.
            keep: Keep all per-sample gradients for a later projection.

        """
        delta, weight = self.delta, self.param
        x = pad_input(self.x, self.padding, self.padding_mode)
        n, p, t = delta.shape
        d = weight[0].numel()
        chunk = chunk_samples(delta.device, n, d * max(t, p))
        buffer = delta.new_empty((n if keep else chunk, p, d))
        scale, scale_products = self.scale, d <= t

        def per_sample(rows: slice) -> Tensor:
            unfolded = unfold_patches(
                x[rows], weight.shape[2:], self.dilation, self.stride, t
            )
            out = buffer[rows] if keep else buffer[: unfolded.shape[0]]
            factor = delta[rows] if scale_products else delta[rows] * scale
            torch.bmm(factor, unfolded.transpose(1, 2), out=out)
            return (out.mul_(scale) if scale_products else out).flatten(1)

        def project(direction: Tensor) -> Tensor:
            response = nn.functional.conv2d(
                x, direction.view_as(weight), None, self.stride, 0, self.dilation
            )
            return (response.flatten(2) * delta).sum((1, 2)) * scale

        if keep:
            project = buffer.view(n, -1).__matmul__

        reducer = ChunkReducer(n, grad, weight, request, self.positions, True)
        for first in range(0, n, chunk):
            reducer.add(per_sample(slice(first, first + chunk)), reused=not keep)
        stats = reducer.finish(project)
        stats.rounding = self.rounding
        return stats


def chunk_samples(device: torch.device, n: int, per_sample: int) -> int:
    """Samples per chunk of the N in the convolution routes.

    At most ``CPU_CHUNK_SCALE * layer_stats.CHUNK_ELEMENTS`` elements per temporary
    (``per_sample`` each) on the CPU, ``layer_stats.DEVICE_CHUNK_ELEMENTS``
    elsewhere; then the chunks are made as equal as that bound allows, each a
    multiple of :data:`CHUNK_MULTIPLE` samples where the bound holds two of them
    (3c3d's third convolution, N = 128: 8 chunks of 16 samples; with 2**20 elements
    and no multiple, 14 of 9 and one of 2).
    """
    cpu = CPU_CHUNK_SCALE * layer_stats.CHUNK_ELEMENTS
    bound = cpu if device.type == "cpu" else layer_stats.DEVICE_CHUNK_ELEMENTS
    most = max(1, min(n, bound // per_sample))
    # From two multiples up: rounding down keeps at least 16 of 23 samples.
    multiple = CHUNK_MULTIPLE if 2 * CHUNK_MULTIPLE <= most < n else 1
    most -= most % multiple
    chunks = -(-n // most)
    equal = -(-n // chunks)  # <= most; rounded up to a multiple, still <= most
    return -(-equal // multiple) * multiple


def pad_input(x: Tensor, padding: Sequence[int], mode: str = "constant") -> Tensor:
    """``x`` padded as the convolution pads it: ``F.pad``, or ``x`` if nothing is.

    ``F.pad`` copies its input even where every pad is 0: on 3c3d's second
    convolution 1.6 M numbers per step, once more in ``business``'s GGN diagonal.

    Args:
        x: ``[N, C_in, H, W]``, the layer's input.
        padding: The pads in ``F.pad``'s order (the convolution's
            ``_reversed_padding_repeated_twice``).
        mode: ``F.pad``'s mode.

    """
    return nn.functional.pad(x, padding, mode) if any(padding) else x


def patch_view(
    padded: Tensor,
    kernel_size: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
) -> Tensor:
    """``[c, C_in, k_h, k_w, H_out, W_out]``: the input patches, a strided view.

    Of padded inputs ``[c, C_in, H, W]``; entry ``[n, ch, i, j, y, x]`` is the input
    the kernel's offset ``(i, j)`` sees at output position ``(y, x)``. No copy.
    """
    c, channels, height, width = padded.shape
    k_h, k_w = kernel_size
    s_n, s_c, s_h, s_w = padded.stride()
    (d_h, d_w), (t_h, t_w) = dilation, stride
    h_out = (height - d_h * (k_h - 1) - 1) // t_h + 1
    w_out = (width - d_w * (k_w - 1) - 1) // t_w + 1
    return padded.as_strided(
        (c, channels, k_h, k_w, h_out, w_out),
        (s_n, s_c, d_h * s_h, d_w * s_w, t_h * s_h, t_w * s_w),
        padded.storage_offset(),
    )


def unfold_patches(
    padded: Tensor,
    kernel_size: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
    t: int,
) -> Tensor:
    """``[c, d, T]``: ``F.unfold`` of padded inputs ``[c, C_in, H, W]``, one copy.

    The copy of :func:`patch_view`, several times faster than ``F.unfold`` on a
    CPU. ``d = C_in k_h k_w``; ``T = H_out W_out`` output positions.
    """
    patches = patch_view(padded, kernel_size, dilation, stride)
    return patches.reshape(padded.shape[0], -1, t)


def reduce_all(
    factors: dict[str, ConvFactors], grads: dict[str, Tensor], request: SampleRequest
) -> dict[str, LayerStats]:
    """Every layer's statistics, keeping per-sample gradients where they pay most.

    With ``request.keep_for_projection``, the layers of :func:`kept_layers` keep
    their ``[N, D_l]`` per-sample gradients; the others project by convolution
    (:meth:`ConvFactors.reduce`).

    Args:
        factors: Parameter name -> the weight's factors.
        grads: Parameter name -> flat gradient of the mean loss ``[D_l]``.
        request: What to compute.

    """
    kept = kept_layers(factors) if request.keep_for_projection else set()
    return {
        name: f.reduce(grads[name], request, name in kept)
        for name, f in factors.items()
    }


def kept_layers(factors: dict[str, ConvFactors]) -> set[str]:
    """The layers that keep their per-sample gradients for a later projection.

    Those whose projection by convolution costs the most per kept number (most
    output positions T) first, while all kept fit :data:`KEEP_ELEMENTS`.
    """
    kept: set[str] = set()
    budget = KEEP_ELEMENTS
    for name in sorted(factors, key=lambda n: -factors[n].positions_per_sample):
        if factors[name].elements <= budget:
            kept.add(name)
            budget -= factors[name].elements
    return kept
