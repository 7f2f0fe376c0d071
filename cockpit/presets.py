"""The presets and the bookkeeping keys: plain data, importable without torch.

Both are derived from the quantity catalogue (:mod:`cockpit.catalog`), which the
tracker (:mod:`cockpit.quantities`) and the dashboard (``cockpit.instruments``, which
must not import torch) read alike.
"""

from __future__ import annotations

from cockpit.catalog import BOOKKEEPING, PRESETS

__all__ = ["BOOKKEEPING", "PRESETS"]
