"""``python -m cockpit.app``: the same as the ``cockpit`` command."""

import sys

from cockpit.app.cli import main

sys.exit(main())
