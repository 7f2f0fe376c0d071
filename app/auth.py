"""HTTP basic authentication for the dashboard (``cockpit serve --auth USER:PASSWORD``).

One Flask ``before_request`` hook on Dash's server answers every request without the
right credentials with 401: the page, Dash's layout, dependencies and callback routes,
its JavaScript bundles and the assets alike. Basic authentication sends the password
with every request, readable to anyone on the path unless the connection is encrypted:
use it behind an HTTPS proxy or an SSH tunnel.
"""

from __future__ import annotations

import hmac
import os

from flask import Flask, Response, request

__all__ = ["AUTH_ENV", "credentials_from", "parse_credentials", "require_basic_auth"]

#: Environment variable read when ``--auth`` is not given (keeps the password out of
#: the process list).
AUTH_ENV = "COCKPIT_AUTH"


def parse_credentials(text: str) -> tuple[str, str]:
    """Split ``"user:password"``.

    Raises:
        ValueError: If there is no ``:`` or either part is empty.

    """
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError(
            "expected --auth USER:PASSWORD (or COCKPIT_AUTH=USER:PASSWORD), both "
            "non-empty"
        )
    return user, password


def credentials_from(option: str | None) -> tuple[str, str] | None:
    """The credentials of ``--auth``, else of :data:`AUTH_ENV`; ``None`` if neither."""
    text = option if option is not None else os.environ.get(AUTH_ENV)
    return None if not text else parse_credentials(text)


def require_basic_auth(server: Flask, user: str, password: str) -> None:
    """Make every request to ``server`` carry these basic-auth credentials.

    Args:
        server: Dash's Flask server (``app.server``).
        user: The user name.
        password: The password; compared in constant time.

    """
    expected = (user.encode(), password.encode())

    @server.before_request
    def _check() -> Response | None:
        given = request.authorization
        if (
            given is not None
            and given.type == "basic"
            and hmac.compare_digest((given.username or "").encode(), expected[0])
            and hmac.compare_digest((given.password or "").encode(), expected[1])
        ):
            return None
        return Response(
            "cockpit: authentication required.\n",
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="cockpit", charset="UTF-8"'},
        )
