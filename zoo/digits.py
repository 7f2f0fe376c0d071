"""scikit-learn's digits as tensors: 1797 grey 8x8 images of the digits 0-9.

``load_digits`` ships with scikit-learn, so everything here runs offline. The images
are put in one fixed order (a permutation seeded by :data:`SPLIT_SEED`), so that every
run, whatever its own seed, trains and validates on the same images.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from sklearn.datasets import load_digits
from torch import Tensor

__all__ = ["N_VALID", "SPLIT_SEED", "batches", "digits", "train_valid"]

#: Images held out for validation (the rest, 1500, are for training).
N_VALID = 297
#: Seed of the permutation that fixes the order of the images.
SPLIT_SEED = 0


def digits() -> tuple[Tensor, Tensor]:
    """All digits as float32 images in [0, 1], in the fixed order.

    Returns:
        ``x, y``: images of shape ``[1797, 1, 8, 8]`` (float32) and labels of shape
        ``[1797]`` (int64).

    """
    data = load_digits()
    x = torch.as_tensor(data.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.as_tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return x[order], y[order]


def train_valid() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`digits` split into training and validation images.

    Returns:
        ``x_train, y_train, x_valid, y_valid``: 1500 training and :data:`N_VALID`
        validation samples, shaped as in :func:`digits`.

    """
    x, y = digits()
    return x[:-N_VALID], y[:-N_VALID], x[-N_VALID:], y[-N_VALID:]


def batches(
    x: Tensor, y: Tensor, batch_size: int, seed: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless shuffled mini-batches; each pass over the data is a new permutation.

    Args:
        x: Inputs, first dimension the samples.
        y: Labels, same first dimension.
        batch_size: Samples per batch; the last incomplete batch of a pass is dropped.
        seed: Seed of the iterator's own generator (the global one is not touched).

    Yields:
        ``(inputs, labels)`` batches of ``batch_size`` samples.

    Raises:
        ValueError: If ``batch_size`` is not between 1 and the number of samples.

    """
    if not 1 <= batch_size <= len(y):
        raise ValueError(f"batch_size must be in [1, {len(y)}], got {batch_size}.")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield x[index], y[index]
