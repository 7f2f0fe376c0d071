"""Format 3.0's counts as bit lengths and mantissas: exact, as documented, bounded."""

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cockpit.logs._count_codec import decode_counts, encode_counts

COUNTS = hnp.arrays(
    np.int64,
    st.integers(0, 300),
    elements=st.one_of(st.just(0), st.integers(0, 40), st.integers(0, 2**63 - 1)),
)


def _documented(counts):
    """The bytes as the module documents them, built with Python integers."""
    lengths = bytes(int(c).bit_length() for c in counts)
    bits = "".join(format(int(c), "b")[1:] for c in counts if int(c).bit_length() >= 2)
    bits += "0" * (-len(bits) % 8)
    mantissas = int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""
    return zlib.compress(lengths) + mantissas


@settings(max_examples=200, deadline=None)
@given(COUNTS)
def test_counts_decode_to_the_counts_encoded(counts):
    assert np.array_equal(decode_counts(encode_counts(counts), counts.size), counts)


@settings(max_examples=100, deadline=None)
@given(COUNTS)
def test_the_bytes_are_the_documented_layout(counts):
    assert encode_counts(counts) == _documented(counts)


def test_the_extremes_round_trip():
    counts = np.array([0, 1, 2, 3, 4, 255, 256, 2**62, 2**63 - 1], np.int64)
    assert decode_counts(encode_counts(counts), 9).tolist() == counts.tolist()


@pytest.mark.parametrize(
    ("data", "size", "problem"),
    [
        (_documented([5, 6]), 3, "need 3 bit lengths, got 2"),
        (_documented([5, 6, 7]), 2, "need 2 bit lengths, got 3$"),
        (_documented([5, 6])[:-1], 2, "need 1 mantissa bytes, got 0"),
        (_documented([5, 6]) + b"\0", 2, "need 1 mantissa bytes, got 2"),
        (zlib.compress(bytes([64])) + bytes(8), 1, "longer than 63 bits"),
        (b"not zlib", 1, "do not decode"),
    ],
)
def test_bytes_that_are_not_the_counts_are_refused(data, size, problem):
    with pytest.raises(ValueError, match=problem):
        decode_counts(data, size)
