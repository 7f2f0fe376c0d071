"""A record's parameter names written once (format 3.0), not once per quantity.

Most quantities of a step are layered, ``{"total": t, "per_layer": {name: value}}``
with the same names in the same order, which format 2.0 wrote in each of them. The
writer names them once, in the record's :data:`~cockpit.logs.schema.LAYERS` list
(the names of the most frequent ``per_layer``), and writes every ``per_layer`` with
exactly those names, in that order, as the list of its values; the others stay
dicts::

    {"step": 3, "layers": ["0.weight", "0.bias"],
     "values": {"grad_norm": {"total": 3.1, "per_layer": [2.9, 0.4]}, ...}}

Readers turn the lists back into dicts (:func:`expand_layers`, in
``cockpit.logs._format.decode_line``), so a record reads as it did in format 2.0.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from cockpit.logs.schema import PER_LAYER

__all__ = ["expand_layers", "factor_layers"]


# Both walk dicts only; the type test before each call saves a call per number, and
# a dict holding no dict (a per-layer dict of numbers) is not walked at all.
def _holds_dicts(tree: dict[str, Any]) -> bool:
    return dict in set(map(type, tree.values()))


def _layer_names(tree: dict[str, Any], found: Counter[tuple[str, ...]]) -> None:
    for key, item in tree.items():
        if isinstance(item, dict):
            if key == PER_LAYER and item:
                found[tuple(item)] += 1
            if _holds_dicts(item):
                _layer_names(item, found)


def _as_lists(tree: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for key, item in tree.items():
        if isinstance(item, dict):
            item = _as_lists(item, names) if _holds_dicts(item) else dict(item)
            if key == PER_LAYER and tuple(item) == names:
                item = list(item.values())
        out[key] = item
    return out


def factor_layers(values: dict[str, Any]) -> tuple[dict[str, Any], list[str] | None]:
    """``values`` with the most frequent ``per_layer`` names factored out.

    Args:
        values: A record's converted ``"values"`` (JSON-ready).

    Returns:
        ``(values, names)``: a copy with each ``per_layer`` dict that has exactly
        ``names`` (in order) written as the list of its values, and ``names``; or
        ``values`` itself and ``None`` where no names repeat.

    """
    found: Counter[tuple[str, ...]] = Counter()
    _layer_names(values, found)
    if not found:
        return values, None
    names, times = found.most_common(1)[0]
    if times < 2:
        return values, None
    return _as_lists(values, names), list(names)


def expand_layers(tree: dict[str, Any], names: object) -> None:
    """Turn, in place, each ``per_layer`` list in ``tree`` back into a dict.

    Args:
        tree: A decoded record's ``"values"``.
        names: The record's :data:`~cockpit.logs.schema.LAYERS`.

    Raises:
        ValueError: If ``names`` is not a list of distinct strings, or a
            ``per_layer`` list has another length.

    """
    if (
        not isinstance(names, list)
        or not {str}.issuperset(map(type, names))
        or len(set(names)) != len(names)
    ):
        raise ValueError("a record's 'layers' must be a list of distinct strings")
    _expand(tree, names)


def _expand(tree: dict[str, Any], names: list[str]) -> None:
    for key, item in tree.items():
        if type(item) is dict:
            _expand(item, names)
        elif key == PER_LAYER and type(item) is list:
            if len(item) != len(names):
                raise ValueError(
                    f"a 'per_layer' list of {len(item)} values for the record's "
                    f"{len(names)} layers"
                )
            layers = dict(zip(names, item, strict=True))
            for entry in layers.values():
                if type(entry) is dict:
                    _expand(entry, names)
            tree[key] = layers
