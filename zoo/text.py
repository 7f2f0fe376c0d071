"""Character-level text from the Python standard library's own source files.

The sources ship with every Python installation, so nothing is downloaded; the text
is the same for the same Python version.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["ALPHABET", "load_text", "windows"]

#: Characters the models know; anything else in the text becomes "?".
ALPHABET = "\n\t" + "".join(chr(c) for c in range(32, 127))


def load_text(characters: int) -> Tensor:
    """The first ``characters`` characters of the standard library's ``*.py`` files.

    Files are taken in name order from the running Python's ``stdlib`` directory.

    Args:
        characters: How many characters to read at most.

    Returns:
        ``[characters]`` int64 indices into :data:`ALPHABET` (fewer if the sources
        are shorter).

    Raises:
        RuntimeError: If fewer than two characters of Python source were found.

    """
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    index = {c: i for i, c in enumerate(ALPHABET)}
    unknown = index["?"]
    codes: list[int] = []
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        codes.extend(index.get(c, unknown) for c in text)
        if len(codes) >= characters:
            break
    if len(codes) < 2:
        raise RuntimeError(f"No Python sources found under {stdlib}.")
    return torch.tensor(codes[:characters])


def windows(
    text: Tensor, batch_size: int, context: int, seed: int
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless random windows of ``text``: inputs and the characters that follow.

    Args:
        text: ``[L]`` character indices, ``L > context + 1``.
        batch_size: Windows per batch ``N``.
        context: Characters per window ``T``.
        seed: Seed of the iterator's own generator (the global one is not touched).

    Yields:
        ``(inputs, targets)``, both ``[N, T]``; ``targets`` is ``inputs`` shifted by
        one character.

    """
    gen = torch.Generator().manual_seed(seed)
    while True:
        starts = torch.randint(len(text) - context - 1, (batch_size,), generator=gen)
        chunks = torch.stack([text[s : s + context + 1] for s in starts.tolist()])
        yield chunks[:, :-1], chunks[:, 1:]
