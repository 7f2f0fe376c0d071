"""``cockpit serve --auth``: every route Dash serves answers 401 without credentials."""

import base64
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from cockpit.app.auth import credentials_from, parse_credentials
from cockpit.app.server import create_app
from tests.app.test_browser import (
    ARGS,
    CHROMIUM,
    DRAWN,
    cockpit_command,
    free_port,
    stop,
)
from tests.instruments.synthetic import write_run

USER, PASSWORD = "ada", "s3cret:with:colons"


def basic(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth-logs")
    write_run(root / "run", steps=3)
    return root


@pytest.fixture
def client(logdir):
    return create_app(logdir, auth=(USER, PASSWORD)).server.test_client()


def some_bundle(client):
    """A ``_dash-component-suites`` path the page itself loads."""
    page = client.get("/", headers=basic(USER, PASSWORD)).get_data(as_text=True)
    start = page.index("/_dash-component-suites/")
    return page[start : page.index('"', start)]


def routes(client):
    update = json.dumps({"output": "x.children", "outputs": [], "inputs": []})
    return [
        ("GET", "/", None),
        ("GET", "/_dash-layout", None),
        ("GET", "/_dash-dependencies", None),
        ("POST", "/_dash-update-component", update),
        ("GET", some_bundle(client), None),
        ("GET", "/_favicon.ico", None),
        ("GET", "/assets/anything.css", None),
        ("GET", "/_reload-hash", None),
        ("GET", "/no/such/page", None),
    ]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(USER, "wrong"),
        basic("eve", PASSWORD),
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Basic not-base64!"},
    ],
    ids=["none", "wrong-password", "wrong-user", "bearer", "garbage"],
)
def test_every_route_refuses_requests_without_the_credentials(client, headers):
    for method, path, body in routes(client):
        response = client.open(
            path,
            method=method,
            data=body,
            headers=headers,
            content_type="application/json",
        )
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="cockpit"')
        assert b"run" not in response.data


def test_every_url_rule_of_the_server_is_guarded(client):
    for rule in client.application.url_map.iter_rules():
        path = rule.rule.replace("<path:", "<").replace("<", "").replace(">", "")
        assert client.get(path).status_code == 401, rule.rule


def test_the_right_credentials_open_every_route(client):
    headers = basic(USER, PASSWORD)
    for path in ("/", "/_dash-layout", "/_dash-dependencies", some_bundle(client)):
        assert client.get(path, headers=headers).status_code == 200, path


def test_without_auth_the_dashboard_is_open(logdir):
    assert create_app(logdir).server.test_client().get("/").status_code == 200


def test_credentials_come_from_the_option_or_the_environment(monkeypatch):
    monkeypatch.setenv("COCKPIT_AUTH", "env:pw")
    assert credentials_from(None) == ("env", "pw")
    assert credentials_from("cli:pw") == ("cli", "pw")
    monkeypatch.delenv("COCKPIT_AUTH")
    assert credentials_from(None) is None
    assert parse_credentials("a:b:c") == ("a", "b:c")
    for bad in ("nocolon", ":pw", "user:"):
        with pytest.raises(ValueError, match="USER:PASSWORD"):
            parse_credentials(bad)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_browser_with_credentials_draws_and_without_gets_401(logdir, tmp_path):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "COCKPIT_AUTH": f"{USER}:{PASSWORD}"}
    with (tmp_path / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [*cockpit_command(), "serve", str(logdir), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError as err:
                assert err.code == 401
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.3)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=ARGS
            )
            anonymous = browser.new_context().new_page()
            with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
                anonymous.goto(url)
            context = browser.new_context(
                http_credentials={"username": USER, "password": PASSWORD}
            )
            page = context.new_page()
            assert page.goto(url).status == 200
            page.wait_for_function(DRAWN, arg="loss-graph", timeout=30_000)
            browser.close()
    finally:
        stop(server)
