import subprocess
import sys
from pathlib import Path

import pytest

import cockpit.instruments as instruments
from cockpit.instruments import GROUPS, REGISTRY, Instrument, get
from cockpit.presets import BOOKKEEPING, how_to_fill

ROOT = Path(__file__).resolve().parents[2]


def test_each_instrument_lives_in_the_file_named_by_its_id():
    for instrument_id, cls in REGISTRY.items():
        assert cls.__module__ == f"cockpit.instruments.{instrument_id}"
        assert (ROOT / "instruments" / f"{instrument_id}.py").is_file()


def test_groups_hold_every_instrument_once():
    grouped = [i for _, ids in GROUPS.values() for i in ids]
    assert sorted(grouped) == sorted(REGISTRY)
    assert list(GROUPS) == [
        "step_size",
        "gradients",
        "curvature",
        "performance",
        "overhead",
    ]


def test_every_instrument_explains_how_to_read_it():
    for cls in REGISTRY.values():
        assert cls.title and cls.quantities
        assert len(cls.how_to_read) > 40
        assert "\n" not in cls.how_to_read


def test_duplicate_ids_are_refused():
    class Twin(Instrument):
        id = "alpha"

    with pytest.raises(ValueError, match="'alpha' is used by both AlphaGauge and Twin"):
        instruments._register(REGISTRY["alpha"], Twin)


def test_get_names_the_known_instruments():
    assert get("alpha").id == "alpha"
    with pytest.raises(
        KeyError, match=r"Unknown instrument 'alfa'\. Choose one of: alpha"
    ):
        get("alfa")


def test_how_to_fill_names_the_preset():
    assert how_to_fill("hess_max_ev") == (
        "Track it with preset='full' or quantities=['hess_max_ev']."
    )
    assert "preset='business'" in how_to_fill("tic_diag")
    assert "plain SGD only" in how_to_fill("cabs")
    assert "every tracked step" in how_to_fill(BOOKKEEPING[0])
    assert "ck.log(val_f1=...)" in how_to_fill("val_f1")


def test_dashboard_imports_neither_torch_nor_matplotlib():
    # The instruments hold their report drawings; matplotlib loads only for a report.
    heavy = "('torch', 'backpack', 'matplotlib')"
    code = (
        "import sys, cockpit.app, cockpit.instruments, cockpit.app.server;"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {heavy});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
