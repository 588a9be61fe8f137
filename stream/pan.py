"""Card numbers (PANs) in free text: detect them cheaply, mask them wherever a person could read them.

PANTHER scores tokenized identifiers; a raw primary account number has no business in its topics,
dead letters or logs (PCI DSS). What counts as "PAN-like" here, for both refusing and masking:

- 13 to 19 ASCII digits, optionally grouped by single spaces or dashes (`4111 1111 1111 1111`),
  not part of a longer digit run;
- the first digit is 2–6, the major networks' ranges (Mastercard 2/5, Amex/Diners/JCB 3, Visa 4,
  Discover/UnionPay/Maestro 6). This leaves out epoch-millisecond and -microsecond timestamps and
  snowflake ids, which start with 1 today and would otherwise pass Luhn one time in ten;
- the digits pass the Luhn check.

Masking keeps the length and the separators and the last four digits (`****-****-****-1111`), so a
masked dead letter still lines up with the parser's "line 1 column 57" and a person can match the
last four against a case.

>>> looks_like_pan("card 4111 1111 1111 1111 declined")
True
>>> looks_like_pan("order 1767323045000")  # epoch ms: starts with 1
False
>>> mask_pans("card 4111-1111-1111-1111")
'card ****-****-****-1111'
"""

from __future__ import annotations

import re

MIN_PAN_DIGITS = 13
MAX_PAN_DIGITS = 19

# One regex scan per candidate string is cheaper than any pure-Python digit count (measured: ~0.25 µs
# on a 17-character string); it runs only on free-text values of at least MIN_PAN_DIGITS characters.
_PAN_TEXT = re.compile(r"(?<![0-9])[2-6](?:[ -]?[0-9]){12,18}(?![0-9])")
_PAN_BYTES = re.compile(rb"(?<![0-9])[2-6](?:[ -]?[0-9]){12,18}(?![0-9])")
_DIGITS = frozenset("0123456789")


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check on a string of ASCII digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _digits(candidate: str) -> str:
    return "".join(char for char in candidate if char in _DIGITS)


def looks_like_pan(text: str) -> bool:
    """Whether `text` contains a PAN-like digit run (see the module docstring)."""
    if len(text) < MIN_PAN_DIGITS or _PAN_TEXT.search(text) is None:  # the common case: one C call
        return False
    return any(luhn_ok(_digits(match.group())) for match in _PAN_TEXT.finditer(text))


def _mask(candidate: str) -> str:
    if not luhn_ok(_digits(candidate)):
        return candidate
    keep = 4
    out = []
    for char in reversed(candidate):
        if char in _DIGITS:
            out.append(char if keep > 0 else "*")
            keep -= 1
        else:
            out.append(char)
    return "".join(reversed(out))


def mask_pans(text: str) -> str:
    """`text` with every PAN-like run masked down to its last four digits; anything else unchanged."""
    if len(text) < MIN_PAN_DIGITS:
        return text
    return _PAN_TEXT.sub(lambda match: _mask(match.group()), text)


def mask_pans_bytes(raw: bytes) -> tuple[bytes, int]:
    """`raw` with PAN-like ASCII digit runs masked (same length), and how many runs were masked."""
    masked = 0

    def replace(match: re.Match[bytes]) -> bytes:
        nonlocal masked
        candidate = match.group().decode("ascii")
        result = _mask(candidate)
        masked += result != candidate
        return result.encode("ascii")

    if len(raw) < MIN_PAN_DIGITS:
        return raw, 0
    return _PAN_BYTES.sub(replace, raw), masked
