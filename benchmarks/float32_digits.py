"""Microseconds per value to find float32 values' shortest decimal digits.

The log writer writes a float32 statistic as the shortest decimal that reads back as
the same float32 (``cockpit.logs._packing.float32_shortest``). This times that
function, which uses orjson, against numpy's ``astype(str)`` route it replaced, on
the same random float32 values (magnitudes from 1e-30 to 1e30), and checks that both
give the same float64 values::

    .venv/bin/python benchmarks/float32_digits.py --sizes 3 200 10000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from cockpit.logs._packing import float32_shortest


def numpy_shortest(values: np.ndarray) -> np.ndarray:
    """The route ``float32_shortest`` replaced: numpy's shortest strings, parsed."""
    return np.asarray(values, dtype=np.float32).astype(str).astype(np.float64)


def microseconds_per_value(
    fn: Callable[[np.ndarray], np.ndarray], values: np.ndarray, repeats: int
) -> float:
    """The best of ``repeats`` timed calls, per value."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(values)
        best = min(best, time.perf_counter() - start)
    return 1e6 * best / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 200, 10_000])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| values per call | numpy astype(str), µs a value | orjson, µs a value |")
    print("|---:|---:|---:|")
    for size in args.sizes:
        exponents = rng.uniform(-30, 30, size)
        values = (rng.standard_normal(size) * 10.0**exponents).astype(np.float32)
        assert np.array_equal(numpy_shortest(values), float32_shortest(values))
        old = microseconds_per_value(numpy_shortest, values, args.repeats)
        new = microseconds_per_value(float32_shortest, values, args.repeats)
        print(f"| {size:,} | {old:.3f} | {new:.3f} |")


if __name__ == "__main__":
    main()
