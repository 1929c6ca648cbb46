"""Python values as JSON text, and back, exactly: the tagged JSON codec.

Plain JSON would not give back what was written: reasoning-gym's entries hold tuples (every
`metadata.difficulty` range), dicts with int keys (graph_color's `possible_answer`),
`fractions.Fraction` (gsm_symbolic's variables) and numpy scalars (codeio's data). Those are
written as tagged objects, `{"__py__": <kind>, ...}`, and rebuilt on reading, so
`decode(encode(x)) == x` with the same types. Anything else that is not JSON is refused with its
type named (TypeError).

Two users: verl's `reward_model.ground_truth` (harness/backends/verl/references.py: the reward verl
computes is the in-process scorer's on the same input) and the on-disk item cache
(suites/item_cache.py: cached items equal freshly built ones, references included).
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

TAG = "__py__"
"""The key that marks a tagged object (a plain dict with this key is itself written tagged)."""


def encode(reference: Any) -> str:
    """`reference` as a JSON string that `decode` turns back into an equal object of the same types;
    TypeError naming the type for a value of no supported type."""
    return json.dumps(_plain(reference), ensure_ascii=False)


def decode(text: str) -> Any:
    """The reference `encode` wrote."""
    return json.loads(text, object_hook=_rebuild)


def _plain(x: Any) -> Any:
    if x is None or type(x) in (bool, int, float, str):
        return x
    if type(x) is list:
        return [_plain(v) for v in x]
    if type(x) is dict:
        if all(isinstance(k, str) for k in x) and TAG not in x:
            return {k: _plain(v) for k, v in x.items()}
        return {TAG: "dict", "items": [[_plain(k), _plain(v)] for k, v in x.items()]}
    if type(x) is tuple:
        return {TAG: "tuple", "items": [_plain(v) for v in x]}
    if type(x) in (set, frozenset):
        return {TAG: type(x).__name__, "items": [_plain(v) for v in x]}
    if type(x) is Fraction:
        return {TAG: "fraction", "value": f"{x.numerator}/{x.denominator}"}
    if type(x).__module__ == "numpy" and hasattr(x, "dtype") and getattr(x, "shape", None) == ():
        return {TAG: "numpy", "dtype": str(x.dtype), "value": x.item()}
    raise TypeError(f"a value of type {type(x).__module__}.{type(x).__qualname__} ({x!r:.60}) cannot be written "
                    "as tagged JSON (supported: JSON types, tuple, set, frozenset, dict with any keys, "
                    "fractions.Fraction, numpy scalars)")


def _rebuild(obj: dict) -> Any:
    kind = obj.get(TAG)
    if kind is None:
        return obj
    if kind == "dict":
        return dict(obj["items"])
    if kind == "tuple":
        return tuple(obj["items"])
    if kind in ("set", "frozenset"):
        return (set if kind == "set" else frozenset)(obj["items"])
    if kind == "fraction":
        return Fraction(obj["value"])
    if kind == "numpy":
        import numpy  # lazy: only references that held numpy scalars need it

        return numpy.dtype(obj["dtype"]).type(obj["value"])
    raise ValueError(f"unknown tagged value {kind!r} in tagged JSON (written by a newer harness?)")

