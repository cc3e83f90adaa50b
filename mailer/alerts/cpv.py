"""CPV 2008 codes: the shipped list of the vocabulary's 9,454 codes, and how a notice's code is read.

A code is written with 8 digits, optionally followed by its check digit (``45233140-2``). The
code must be in the list (``data/cpv_2008_codes.txt``, see data/README.md); a check digit is
kept out of the code and checked to be one digit, but not verified: no formula reproduces the
check digits the 2008 Regulation publishes (its documented method gives other digits for most
codes, which the Publications Office acknowledges), and the list shipped here has none.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

CPV_CODES_FILE = Path(__file__).parent / "data" / "cpv_2008_codes.txt"

#: 8 digits, an optional check digit after a hyphen.
_CPV = re.compile(r"(?P<code>\d{8})(?:-(?P<check>\d))?")


@functools.cache
def cpv_codes() -> frozenset[str]:
    """Every code of the vocabulary, read once per process."""
    return frozenset(CPV_CODES_FILE.read_text(encoding="ascii").split())


def cpv_code(raw: object) -> str:
    """The 8-digit code a notice writes (``45233141-9`` -> ``45233141``); ``ValueError`` says why not."""
    text = str(raw).strip()
    match = _CPV.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a CPV code (8 digits, optionally -check digit)")
    code = match["code"]
    if code not in cpv_codes():
        raise ValueError(f"{code!r} is not in the CPV 2008 list")
    return code
