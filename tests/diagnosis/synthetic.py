"""Synthetic log records for the rules' unit tests, in the tracker's layout."""

from __future__ import annotations

from typing import Any

__all__ = ["META", "layered", "record", "series"]

#: A tiny classifier's ``meta.json``: 4 inputs, 8 hidden units, 3 classes, plain SGD.
META: dict[str, Any] = {
    "parameters": {
        "0.weight": [8, 4],
        "0.bias": [8],
        "2.weight": [3, 8],
        "2.bias": [3],
    },
    "optimizer": {"type": "SGD", "defaults": {"lr": 0.1, "momentum": 0.0}},
    "loss": {"type": "CrossEntropyLoss", "mean": True},
}


def layered(total: float | None, **layers: float | None) -> dict[str, Any]:
    """``{"total": total, "per_layer": {...}}``; ``w0`` etc. name ``0.weight`` etc."""
    names = {"w0": "0.weight", "b0": "0.bias", "w2": "2.weight", "b2": "2.bias"}
    return {"total": total, "per_layer": {names[k]: v for k, v in layers.items()}}


def record(step: int, nonfinite: list[str] | None = None, **values: Any) -> dict:
    """One record of ``step`` with ``values`` (and a ``nonfinite`` list if given)."""
    out: dict[str, Any] = {"step": step, "time": float(step), "values": values}
    if nonfinite:
        out["nonfinite"] = nonfinite
    return out


def series(key: str, values: list[Any], start: int = 0) -> list[dict]:
    """One record per value of ``key``, at steps ``start, start + 1, ...``."""
    return [record(start + i, **{key: v}) for i, v in enumerate(values)]
