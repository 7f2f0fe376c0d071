"""Build and serve the Dash app over a LOGDIR."""

from __future__ import annotations

import logging
import os
import sys

from dash import Dash

from cockpit.app.auth import require_basic_auth
from cockpit.app.callbacks import register
from cockpit.app.layout import build_layout
from cockpit.app.store import RunStore
from cockpit.app.throttle import CHECK_S

__all__ = ["LOCAL_HOSTS", "create_app", "serve"]

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def create_app(
    logdir: str | os.PathLike[str],
    interval_s: float = CHECK_S,
    auth: tuple[str, str] | None = None,
) -> Dash:
    """The dashboard over every run under ``logdir``.

    Args:
        logdir: Directory holding the run directories.
        interval_s: Seconds between a page's checks for new steps.
        auth: ``(user, password)`` that every request must carry (HTTP basic
            authentication); ``None``: no authentication.

    Returns:
        The Dash app; ``app.server`` is its Flask server.

    Raises:
        FileNotFoundError: If ``logdir`` is not a directory.

    """
    store = RunStore(logdir)
    app = Dash(
        __name__,
        title="cockpit",
        update_title=None,
        serve_locally=True,
    )
    app.layout = build_layout(str(store.logdir), int(interval_s * 1000))
    register(app, store)
    app.server.config["cockpit_store"] = store
    if auth is not None:
        require_basic_auth(app.server, *auth)
    return app


def serve(
    logdir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8050,
    interval_s: float = CHECK_S,
    auth: tuple[str, str] | None = None,
) -> None:
    """Serve the dashboard until interrupted.

    Args:
        logdir: Directory holding the run directories.
        host: Interface to bind; anything but the loopback exposes the runs.
        port: TCP port.
        interval_s: Seconds between a page's checks for new steps.
        auth: As for :func:`create_app`.

    """
    app = create_app(logdir, interval_s, auth)
    if host not in LOCAL_HOSTS and auth is None:
        print(
            f"WARNING: serving on {host} without --auth: anyone who can reach port "
            f"{port} can read every run under {logdir}.",
            file=sys.stderr,
        )
    elif host not in LOCAL_HOSTS:
        print(
            "WARNING: --auth sends the password unencrypted over HTTP; put the "
            "dashboard behind an HTTPS proxy or an SSH tunnel.",
            file=sys.stderr,
        )
    # Four requests a second per open page would flood the terminal.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    shown = f"[{host}]" if ":" in host else host
    print(f"cockpit dashboard on http://{shown}:{port}/ (LOGDIR {logdir})", flush=True)
    app.run(host=host, port=port, debug=False)
