"""``cockpit report``: writes the figure, and refuses bad input with exit status 2."""

from pathlib import Path

import pytest

from cockpit.app import cli
from tests.instruments.synthetic import write_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    write_run(run_dir, steps=30)
    return run_dir


def test_report_writes_the_file(run_dir, tmp_path, capsys):
    out = tmp_path / "cockpit.png"
    assert cli.main(["report", str(run_dir), "-o", str(out), "--dpi", "40"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 50_000
    assert capsys.readouterr().out == f"Report of run written to {out}\n"


def test_dpi_sets_the_resolution(run_dir, tmp_path):
    sizes = {}
    for dpi in (20, 40):
        out = tmp_path / f"{dpi}.png"
        assert (
            cli.main(["report", str(run_dir), "-o", str(out), "--dpi", str(dpi)]) == 0
        )
        sizes[dpi] = out.read_bytes()[16:24]  # IHDR width and height
    small = [int.from_bytes(sizes[20][i : i + 4], "big") for i in (0, 4)]
    large = [int.from_bytes(sizes[40][i : i + 4], "big") for i in (0, 4)]
    assert [round(b / a) for a, b in zip(small, large, strict=True)] == [2, 2]


def test_default_output_is_cockpit_png(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["report", str(run_dir)])
    assert (args.output, args.dpi) == ("cockpit.png", 150)


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (
            lambda run, tmp: [str(tmp), "-o", str(tmp / "a.png")],
            "Expected a run directory containing meta.json",
        ),
        (
            lambda run, tmp: [str(run), "-o", str(tmp / "a.jpg")],
            "Unknown output extension '.jpg'",
        ),
        (
            lambda run, tmp: [str(run), "-o", str(tmp / "no" / "a.png")],
            "is not a directory",
        ),
        (lambda run, tmp: [str(run), "-o", str(tmp)], "Unknown output extension"),
    ],
    ids=["not-a-run", "extension", "missing-directory", "directory"],
)
def test_bad_input_exits_with_2(run_dir, tmp_path, capsys, make_args, message):
    assert cli.main(["report", *make_args(run_dir, tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("cockpit report: ")
    assert message in err
    assert out == ""


def test_an_unwritable_file_exits_with_2(run_dir, tmp_path, capsys, monkeypatch):
    def refuse(self, data):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", refuse)
    assert cli.main(["report", str(run_dir), "-o", str(tmp_path / "a.pdf")]) == 2
    assert "Cannot write" in capsys.readouterr().err
    assert not (tmp_path / "a.pdf").exists()


@pytest.mark.parametrize("dpi", ["0", "-3", "high"])
def test_dpi_must_be_positive(run_dir, dpi, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", str(run_dir), "--dpi", dpi])
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
