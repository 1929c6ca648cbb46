"""Item references as text for verl's `reward_model.ground_truth`, and back, exactly.

verl hands the reward function the ground truth as the parquet column holds it, so a reference is
stored as one JSON string, written by the harness's tagged JSON codec (harness/codec.py): tuples,
int-keyed dicts, fractions and numpy scalars come back as they were, so `decode(encode(x)) == x`
with the same types, and the reward verl computes is the in-process scorer's on the same input.
Anything else that is not JSON is refused with its type named.
"""

from __future__ import annotations

from harness.codec import TAG, decode, encode

__all__ = ["TAG", "decode", "encode"]
