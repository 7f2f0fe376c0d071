import numpy as np

from cockpit.instruments._series import ema, ema_span, even_indices, extreme_indices


def test_extreme_indices_keep_a_single_spike_and_dip():
    values = np.sin(np.linspace(0, 20, 100_000))
    values[31_337] = 50.0
    values[77_777] = -50.0
    keep = extreme_indices(values, 1000)
    assert len(keep) <= 1002
    assert 31_337 in keep
    assert 77_777 in keep
    assert keep[0] == 0
    assert keep[-1] == len(values) - 1
    assert np.all(np.diff(keep) > 0)


def test_short_series_are_kept_whole():
    assert extreme_indices(np.arange(10.0), 100).tolist() == list(range(10))
    assert even_indices(10, 100).tolist() == list(range(10))


def test_even_indices_keep_the_ends():
    keep = even_indices(100_000, 500)
    assert len(keep) == 500
    assert keep[0] == 0
    assert keep[-1] == 99_999


def test_ema_is_debiased_and_smooth():
    values = np.full(50, 3.0)
    np.testing.assert_allclose(ema(values), values)
    noisy = np.random.default_rng(0).normal(0, 1, 1000)
    assert ema(noisy).std() < noisy.std() / 2
    assert len(ema(np.empty(0))) == 0


def test_ema_span_grows_with_the_run():
    assert ema_span(60) == 3
    assert ema_span(2) == 1
    assert ema_span(100_000) == 1000
