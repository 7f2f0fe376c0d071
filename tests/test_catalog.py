"""The quantity catalogue against the registries, and what is derived from it."""

import subprocess
import sys

import numpy as np
import pytest

import cockpit.instruments as instruments
from cockpit import catalog, quantities, tracker
from cockpit.catalog import CATALOGUE, ENTRIES, GROUPS, KRONECKER, PLAIN_SGD
from cockpit.presets import BOOKKEEPING, PRESETS
from tests.instruments.synthetic import curvature_values, step_records

QUANTITIES = {e.key for e in CATALOGUE if not e.bookkeeping}


def test_every_quantity_has_an_entry_and_every_entry_a_quantity():
    assert set(quantities.REGISTRY) == QUANTITIES
    for key in QUANTITIES:
        assert quantities.REGISTRY[key].name == key


def test_every_instrument_has_entries_and_every_entry_an_instrument():
    assert set(instruments.REGISTRY) == {e.instrument for e in CATALOGUE}
    for instrument_id, cls in instruments.REGISTRY.items():
        shown = {e.key for e in CATALOGUE if e.instrument == instrument_id}
        assert set(cls.quantities) <= shown, instrument_id
    for key in QUANTITIES:
        assert key in instruments.REGISTRY[ENTRIES[key].instrument].quantities


def test_groups_are_the_catalogue_groups_with_their_instruments():
    titles = [(group, title) for group, (title, _) in instruments.GROUPS.items()]
    assert titles == list(GROUPS.items())
    for group, (_, ids) in instruments.GROUPS.items():
        for i in ids:
            assert {e.group for e in CATALOGUE if e.instrument == i} == {group}


def test_entries_are_complete():
    for entry in CATALOGUE:
        assert entry.group in GROUPS, entry.key
        assert entry.preset in (*catalog.PRESET_NAMES, None), entry.key
        assert entry.every >= 1
        assert entry.title and "\n" not in entry.title
        assert len(entry.reading) > 40 and "\n" not in entry.reading
        if entry.bookkeeping:
            assert entry.preset is None and entry.only is None, entry.key
        elif entry.preset is None:
            assert entry.only is not None, f"{entry.key}: in no preset, so say why"


def test_presets_are_the_ones_users_know():
    economy = dict.fromkeys(
        [
            "loss",
            "grad_norm",
            "distance",
            "update_size",
            "input_scale",
            "norm_test",
            "inner_product_test",
            "orthogonality_test",
            "alpha",
            "grad_hist_1d",
            "mean_gsnr",
            "gradient_noise_scale",
        ],
        1,
    )
    business = {**economy, "hess_trace": 1, "tic_diag": 1, "tic_trace": 1}
    full = {
        **business,
        "param_norm": 1,
        "grad_hist_2d": 1,
        "hess_max_ev": 10,
        "kfac_block": 10,
        "ggn_top_eigen": 10,
        "curvature_noise": 10,
    }
    assert {"economy": economy, "business": business, "full": full} == PRESETS
    assert quantities.PRESETS is PRESETS
    assert BOOKKEEPING == (
        "lr",
        "batch_size",
        "step_time",
        "tracker_time",
        "overhead_share",
    )
    assert frozenset(BOOKKEEPING) == tracker.BOOKKEEPING


def test_constraints_give_the_tracker_its_reasons():
    assert catalog.keys_with(PLAIN_SGD) == ("cabs", "early_stopping")
    assert {"kfac_block": KRONECKER.reason} == tracker.KRONECKER_ONLY
    assert "Kronecker factors exist for Linear" in KRONECKER.reason


def test_a_key_described_twice_is_refused():
    with pytest.raises(ValueError, match="describes 'alpha' twice"):
        catalog._by_key((ENTRIES["alpha"], ENTRIES["alpha"]))


def test_an_instrument_file_without_its_class_is_refused():
    with pytest.raises(ImportError, match="must define one Instrument subclass"):
        instruments._load("_view")


def test_synthetic_records_cover_the_catalogue():
    logged = {k for r in step_records(10) for k in r["values"]}
    assert logged == set(ENTRIES) | {"valid_loss", "valid_accuracy"}
    curvature = {e.key for e in CATALOGUE if e.group == "curvature"}
    assert set(curvature_values(10, np.random.default_rng(0))) == curvature


def test_catalogue_and_presets_do_not_import_torch():
    code = (
        "import sys, cockpit.catalog, cockpit.presets;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torch');"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
