"""Synthetic log records in the tracker's format, for instrument and app tests.

Keys and shapes follow what the tracker writes (``examples/digits_cnn.py --preset
full``) and, for the curvature quantities, the keys agreed for them: ``hess_max_ev``
with ``iterations``/``converged``/``residual``, ``kfac_block`` with
``max_eigenvalue``/``trace``/``condition`` (NaN condition = singular)/
``nonzero_condition``,
``ggn_top_eigen`` by direction ``"1"``, ``"2"``, ... and ``curvature_noise``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cockpit.logs import RunWriter
from cockpit.logs.reader import records_to_frames

LAYERS = ("0.weight", "0.bias", "2.weight", "2.bias")
TOP_K = 3


def _per_layer(total: float, rng: np.random.Generator) -> dict[str, Any]:
    shares = rng.uniform(0.2, 1.0, len(LAYERS))
    return {
        "total": total,
        "per_layer": dict(zip(LAYERS, (total * shares).tolist(), strict=True)),
    }


def _hist_1d(rng: np.random.Generator, scale: float) -> dict[str, Any]:
    values = rng.standard_t(3, 4000) * scale
    counts, edges = np.histogram(values, bins=32)
    return {
        "edges": edges.tolist(),
        "counts": counts.astype(float).tolist(),
        "min": float(edges[0]),
        "max": float(edges[-1]),
        "sample_size": 4000,
        "total": 4000,
    }


def _hist_2d(rng: np.random.Generator, scale: float) -> dict[str, Any]:
    theta, grad = rng.normal(0, 0.3, 3000), rng.normal(0, scale, 3000)
    counts, x_edges, y_edges = np.histogram2d(theta, grad, bins=16)
    whole = {
        "x_edges": x_edges.tolist(),
        "y_edges": y_edges.tolist(),
        "counts": counts.tolist(),
        "sample_size": 3000,
        "total": 3000,
    }
    per_layer = {name: {"counts": (counts / len(LAYERS)).tolist()} for name in LAYERS}
    return {**whole, "per_layer": per_layer}


def curvature_values(step: int, rng: np.random.Generator) -> dict[str, Any]:
    """The curvature quantities of one step (presets business and full)."""
    top = 5.0 + 3.0 * math.tanh(step / 30) + rng.normal(0, 0.2)
    condition = _per_layer(1e3, rng)
    condition["per_layer"]["0.bias"] = None  # a singular factor
    return {
        "hess_trace": _per_layer(50.0 + step * 0.2, rng),
        "tic_diag": _per_layer(2.0 + rng.uniform(), rng),
        "tic_trace": _per_layer(1.5 + rng.uniform(), rng),
        "hess_max_ev": {
            "total": top,
            "iterations": 20 if step % 7 else 100,
            "converged": bool(step % 7),
            "residual": 1e-4 if step % 7 else 0.3,
        },
        "kfac_block": {
            "max_eigenvalue": _per_layer(top, rng),
            "trace": _per_layer(3 * top, rng),
            "condition": condition,
            "nonzero_condition": {
                "total": 800.0,
                "per_layer": {name: 100.0 * (i + 1) for i, name in enumerate(LAYERS)},
            },
        },
        "ggn_top_eigen": {str(k): top / k for k in range(1, TOP_K + 1)},
        "curvature_noise": {
            key: {str(k): float(rng.uniform(0.1, 3.0)) for k in range(1, TOP_K + 1)}
            for key in ("curvature_mean", "curvature_snr", "slope_mean", "slope_snr")
        },
    }


def step_records(
    step: int, seed: int = 0, curvature: bool = True
) -> list[dict[str, Any]]:
    """The records the tracker writes for one step: the step's, and alpha late.

    Args:
        step: The step.
        seed: Varies the values between runs.
        curvature: Whether the curvature quantities are included.

    """
    rng = np.random.default_rng([seed, step])
    decay = math.exp(-step / 50)
    noise = None if step % 11 == 3 else 40.0 + 10 * rng.uniform()
    values: dict[str, Any] = {
        "loss": {"total": 0.3 + 2.0 * decay + 0.05 * rng.normal(), "variance": 0.1},
        "grad_norm": _per_layer(1.0 + decay + 0.1 * rng.uniform(), rng),
        "distance": _per_layer(0.1 * math.sqrt(step + 1), rng),
        "update_size": _per_layer(0.01 * (1 + decay), rng),
        "param_norm": _per_layer(3.0 + 0.05 * step, rng),
        "input_scale": {
            "total": 0.9 + 0.05 * rng.uniform(),
            "mean": 0.1,
            "std": 0.9,
            "absmax": 3.0,
        },
        "norm_test": _per_layer(0.5 + rng.uniform(), rng),
        "inner_product_test": _per_layer(0.2 + 0.2 * rng.uniform(), rng),
        "orthogonality_test": _per_layer(0.4 + rng.uniform(), rng),
        "grad_hist_1d": _hist_1d(rng, 0.1 * (1 + decay)),
        "grad_hist_2d": _hist_2d(rng, 0.1),
        "mean_gsnr": _per_layer(0.02 + 0.01 * rng.uniform(), rng),
        "gradient_noise_scale": {"total": noise, "trace_cov": 2.0},
        "cabs": 20.0 + 5 * rng.uniform(),
        "early_stopping": _per_layer(-0.5 + step / 200 + 0.1 * rng.normal(), rng),
        "batch_size": 32,
        "lr": {
            "total": 0.1 * (0.5 if step >= 40 else 1.0),
            "per_layer": {"group0": 0.1},
        },
        "step_time": 0.05 + 0.01 * rng.uniform(),
        "tracker_time": 0.02 + 0.005 * rng.uniform(),
        "overhead_share": 0.04 + 0.01 * rng.uniform(),
    }
    if curvature:
        values.update(curvature_values(step, rng))
    records = [{"step": step, "time": 1.7e9 + step, "values": values}]
    if step % 10 == 0:
        metrics = {"valid_loss": 0.4 + 2.0 * decay, "valid_accuracy": 1 - decay / 2}
        records.append({"step": step, "time": 1.7e9 + step, "values": metrics})
    if step > 0:
        alpha = {"alpha": float(np.clip(rng.normal(0.2, 0.4), -1, 3))}
        records.append({"step": step - 1, "time": 1.7e9 + step, "values": alpha})
    return records


def records(steps: int, seed: int = 0, curvature: bool = True) -> list[dict[str, Any]]:
    """The records of steps ``0 .. steps - 1``."""
    return [r for step in range(steps) for r in step_records(step, seed, curvature)]


def run_data(name: str, steps: int = 60, seed: int = 0, curvature: bool = True):
    """A :class:`~cockpit.instruments.RunData` of synthetic records."""
    from cockpit.instruments import RunData

    scalars, histograms = records_to_frames(
        through_json(records(steps, seed, curvature))
    )
    return RunData.from_frames(name, scalars, histograms)


def through_json(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as a reader returns them (non-finite values as ``None``)."""
    from cockpit.logs._format import decode_line, encode_record

    return [decode_line(encode_record(item)[0]) for item in items]


def write_run(
    run_dir: Path,
    steps: int,
    seed: int = 0,
    curvature: bool = True,
    close: bool = True,
    columns: bool = True,
) -> RunWriter:
    """Write a run directory with the real writer; ``close=False`` leaves it running.

    ``columns=False``: the writer keeps no columnar cache (``RunWriter``'s).
    """
    meta = {"run_name": run_dir.name, "preset": "full" if curvature else "economy"}
    writer = RunWriter(run_dir, meta, columns=columns)
    for record in records(steps, seed, curvature):
        writer.submit(record)
    writer.flush()
    if close:
        writer.close()
    return writer
