import importlib.metadata

import pytest
from dash import Dash

from cockpit.app import cli
from tests.instruments.synthetic import write_run


@pytest.fixture
def ran(monkeypatch):
    calls = []
    monkeypatch.setattr(Dash, "run", lambda self, **kwargs: calls.append(kwargs))
    return calls


def test_serve_defaults_to_this_machine_only(tmp_path, ran, capsys):
    write_run(tmp_path / "run", steps=2)
    assert cli.main(["serve", str(tmp_path)]) == 0
    assert ran == [{"host": "127.0.0.1", "port": 8050, "debug": False}]
    out, err = capsys.readouterr()
    assert f"cockpit dashboard on http://127.0.0.1:8050/ (LOGDIR {tmp_path})" in out
    assert "authentication" not in err


def test_other_hosts_are_warned_about(tmp_path, ran, capsys):
    assert (
        cli.main(["serve", str(tmp_path), "--host", "0.0.0.0", "--port", "9000"]) == 0
    )
    assert ran == [{"host": "0.0.0.0", "port": 9000, "debug": False}]
    _, err = capsys.readouterr()
    assert "WARNING: serving on 0.0.0.0 without --auth: anyone who can reach" in err


def test_auth_is_required_of_every_request_and_its_clear_text_warned_about(
    tmp_path, ran, capsys, monkeypatch
):
    apps = []
    monkeypatch.setattr(Dash, "run", lambda self, **kwargs: apps.append(self))
    argv = ["serve", str(tmp_path), "--host", "0.0.0.0", "--auth", "ada:pw"]
    assert cli.main(argv) == 0
    _, err = capsys.readouterr()
    assert "--auth sends the password unencrypted" in err
    assert "without --auth" not in err
    assert apps[0].server.test_client().get("/").status_code == 401


def test_malformed_auth_is_an_error(tmp_path, ran, capsys):
    assert cli.main(["serve", str(tmp_path), "--auth", "nopassword"]) == 2
    assert ran == []
    assert "expected --auth USER:PASSWORD" in capsys.readouterr().err


def test_missing_logdir_is_an_error(tmp_path, ran, capsys):
    assert cli.main(["serve", str(tmp_path / "nope")]) == 2
    assert ran == []
    assert "is not a directory" in capsys.readouterr().err


def test_a_subcommand_is_required(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_console_script_points_at_the_cli():
    scripts = importlib.metadata.entry_points(group="console_scripts")
    (entry,) = [e for e in scripts if e.name == "cockpit"]
    assert entry.value == "cockpit.app.cli:main"
