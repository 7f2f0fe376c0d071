"""The Dash app and the ``cockpit`` command line (installed as ``cockpit.app``).

``cockpit serve LOGDIR`` starts :func:`create_app` over every run under LOGDIR; the app
reads the log files incrementally (:class:`~cockpit.app.store.RunStore`) and draws the
instruments of ``cockpit.instruments``. It never imports torch.
"""

from __future__ import annotations

from cockpit.app.cli import main
from cockpit.app.server import create_app, serve

__all__ = ["create_app", "main", "serve"]
