"""Small helpers for ``meta.json``: run names and JSON-safe values."""

from __future__ import annotations

import math
import secrets
import socket
from datetime import datetime
from typing import Any


def new_run_name() -> str:
    """``YYYYmmdd-HHMMSS-host-xxxx``: sorts by time, unique across processes."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    host = socket.gethostname().split(".")[0]
    return f"{stamp}-{host}-{secrets.token_hex(2)}"


def json_safe(value: Any) -> Any:
    """``value`` with everything JSON cannot hold replaced by its ``repr``."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
