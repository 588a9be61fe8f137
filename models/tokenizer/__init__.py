"""Structured tokenizer: field-level Cartesian-product tokens (PANTHER §3.2). See docs/TOKENIZER.md."""

from models.tokenizer.config import TokenizerConfig
from models.tokenizer.reserved import (
    FIRST_TOKEN_ID,
    MASK_ID,
    MISSING,
    NON_TARGET_IDS,
    PAD_ID,
    PROFILE_ID,
    RESERVED_TOKENS,
    UNK_ID,
)
from models.tokenizer.spec import FieldSpec
from models.tokenizer.structured import StructuredTokenizer, TokenizerFormatError, content_hash

__all__ = [
    "FIRST_TOKEN_ID",
    "MASK_ID",
    "MISSING",
    "NON_TARGET_IDS",
    "PAD_ID",
    "PROFILE_ID",
    "RESERVED_TOKENS",
    "UNK_ID",
    "FieldSpec",
    "StructuredTokenizer",
    "TokenizerConfig",
    "TokenizerFormatError",
    "content_hash",
]
