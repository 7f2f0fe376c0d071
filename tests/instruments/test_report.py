"""The static report: every instrument drawn, captions, placeholders, output files."""

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from matplotlib.text import Text

from cockpit.exceptions import CorruptLogWarning, LogFormatError
from cockpit.instruments import GROUPS, REGISTRY, Instrument
from cockpit.instruments._reading import read_run
from cockpit.instruments.report import (
    check_output,
    layout,
    report_figure,
    save,
    write_report,
)
from cockpit.logs import RunWriter
from tests.instruments.synthetic import run_data, write_run

ROOT = Path(__file__).resolve().parents[2]
CURVATURE = GROUPS["curvature"][1]


def texts(figure) -> str:
    """Every text of the figure, with line breaks undone."""
    found = [t.get_text() for t in figure.findobj(Text)]
    return " ".join(" ".join(t.split()) for t in found)


def assert_not_blank(png: Path, min_pixels: int = 500_000) -> None:
    image = matplotlib.image.imread(png)
    assert image.shape[0] * image.shape[1] > min_pixels
    rgb = image[..., :3]
    non_white = np.mean(rgb.min(axis=-1) < 0.9)
    assert 0.05 < non_white < 0.8
    assert rgb.std() > 0.1


@pytest.fixture(scope="module")
def full_figure():
    return report_figure(run_data("full-run", steps=60))


@pytest.fixture(scope="module")
def economy_figure():
    return report_figure(run_data("economy-run", steps=40, seed=1, curvature=False))


def test_every_instrument_has_a_drawer_and_a_cell():
    assert all(
        cls.draw_report is not Instrument.draw_report for cls in REGISTRY.values()
    )
    cells = [i for row in layout() for _, ids, _ in row for i in ids]
    assert cells == [i for _, ids in GROUPS.values() for i in ids]
    assert all(sum(len(ids) for _, ids, _ in row) <= 3 for row in layout())
    opened = [group for row in layout() for group, _, opens in row if opens]
    assert opened == list(GROUPS)


def test_titles_and_captions_come_from_the_instruments(full_figure):
    shown = texts(full_figure)
    assert "cockpit report: full-run" in shown
    for title, _ in GROUPS.values():
        assert title in shown
    for cls in REGISTRY.values():
        assert cls.title in shown
        assert " ".join(cls.how_to_read.split()) in shown
    assert "Track it with" not in shown
    assert "newest" in shown


def test_missing_curvature_shows_placeholders(economy_figure):
    shown = texts(economy_figure)
    for inst_id in CURVATURE:
        inst = REGISTRY[inst_id]()
        assert f"No {' / '.join(inst.quantities)} in economy-run" in shown
    assert "Track it with preset='business' or quantities=['hess_trace']" in shown
    assert "Track it with preset='full' or quantities=['hess_max_ev']" in shown
    # The rest is drawn, captions included.
    assert "No loss in" not in shown
    assert " ".join(REGISTRY["hess_max_ev"].how_to_read.split()) in shown


def test_png_pdf_and_svg(full_figure, tmp_path):
    png = save(full_figure, tmp_path / "report.png", dpi=60)
    assert_not_blank(png)
    pdf = save(full_figure, tmp_path / "report.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-"
    assert pdf.stat().st_size > 50_000
    svg = save(full_figure, tmp_path / "report.svg")
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text[:2000]
    # SVG text stays text, so a paper's figure remains searchable and editable.
    assert "Gradient tests" in text


def test_a_run_without_steps_is_all_placeholders(tmp_path):
    RunWriter(tmp_path / "empty", {"run_name": "empty"}).close()
    figure = report_figure(read_run(tmp_path / "empty"))
    shown = texts(figure)
    assert "no steps" in shown
    for cls in REGISTRY.values():
        assert cls.title in shown
    assert "No alpha in empty" in shown


def test_reading_skips_a_corrupt_line_and_a_partial_last_one(tmp_path):
    write_run(tmp_path / "run", steps=5)
    with (tmp_path / "run" / "steps.jsonl").open("a", encoding="utf-8") as file:
        file.write("not json\n")
        file.write('{"step": 9, "values": {"loss": 1.0}')  # no newline: being written
    with pytest.warns(CorruptLogWarning, match="Skipped corrupt line"):
        data = read_run(tmp_path / "run")
    assert data.series("loss").steps.tolist() == [0, 1, 2, 3, 4]
    assert data.name == "run"


def test_output_checks(tmp_path):
    assert check_output(tmp_path / "a.PNG") == "png"
    with pytest.raises(ValueError, match=r"Unknown output extension '\.jpg'.*\.png"):
        check_output(tmp_path / "a.jpg")
    with pytest.raises(ValueError, match=r"'\(none\)'"):
        check_output(tmp_path / "report")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(OSError, match="is a directory"):
        check_output(tmp_path / "dir.png")
    with pytest.raises(OSError, match="is not a directory"):
        check_output(tmp_path / "missing" / "a.png")


def test_write_report_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(LogFormatError, match="Expected a run directory"):
        write_report(tmp_path, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("runs")
    argv = ["--steps", "20", "--preset", "full", "--every", "2"]
    argv += ["--hist-samples", "4096", "--logdir", str(logdir), "--run-name", "cnn"]
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / "digits_cnn.py"), *argv],
        check=True,
        capture_output=True,
    )
    return logdir / "cnn"


def test_report_of_a_real_run(digits_run, tmp_path):
    png = write_report(digits_run, tmp_path / "cockpit.png", dpi=80)
    assert_not_blank(png)
    shown = texts(report_figure(read_run(digits_run)))
    # The curvature the full preset tracks is drawn, not a placeholder.
    for inst_id in ("hess_max_ev", "hess_trace", "kfac_block", "ggn_top_eigen"):
        assert f"No {REGISTRY[inst_id].quantities[0]} in" not in shown
    # Momentum SGD: early stopping is undefined, and the panel says so.
    assert "No early_stopping in cnn" in shown
