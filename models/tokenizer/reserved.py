"""Reserved token ids, shared by the tokenizer, the models and the metrics.

0 [PAD] and 1 [UNK] come from models/ids.py. 2 [MASK] (masked-token objectives) and 3 [PROFILE]
(the "profile as first token" ablation) are reserved so that a model never needs ids outside the
vocabulary; the tokenizer never emits them. Real tokens start at FIRST_TOKEN_ID.
"""

from __future__ import annotations

from models.ids import PAD_ID, UNK_ID

MASK_ID = 2
PROFILE_ID = 3
RESERVED_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[MASK]", "[PROFILE]")
FIRST_TOKEN_ID = len(RESERVED_TOKENS)
# Ids that are never a next-token target: exclude them when ranking (UNK stays: it is a real outcome).
NON_TARGET_IDS: tuple[int, ...] = (PAD_ID, MASK_ID, PROFILE_ID)
MISSING = "∅"  # level of a missing value (None, NaN, empty string, absent column)

__all__ = [
    "FIRST_TOKEN_ID",
    "MASK_ID",
    "MISSING",
    "NON_TARGET_IDS",
    "PAD_ID",
    "PROFILE_ID",
    "RESERVED_TOKENS",
    "UNK_ID",
]
