"""The text of notices as the import keeps it: repaired, checked, single-line where it must be.

- Control characters (U+0000 to U+001F but tab and line breaks, U+007F) and lone surrogates
  are refused: no database stores a NUL, and they are never meant.
- Mojibake is repaired with ftfy ("sÃ©curitÃ©" -> "sécurité"); quotes, ligatures and widths
  are left as written.
- Text still damaged after the repair (U+FFFD, a character lost before the notice reached us:
  "Ma�trise d'œuvre") is kept and flagged (``Tender.text_damaged``).
- Single-line fields (titles, names, towns) have their line breaks made spaces: a title is one
  line in every mail, never a heading of its own. Descriptions keep their lines, without the
  indentation around them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import ftfy

#: What ftfy repairs: wrong decodings and what comes with them, nothing a writer chose.
REPAIR = ftfy.TextFixerConfig(
    unescape_html=False,
    uncurl_quotes=False,
    fix_latin_ligatures=False,
    fix_character_width=False,
    explain=False,
)
#: The character a decoder leaves where it lost one.
REPLACEMENT = "\ufffd"

_REFUSED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"\s*[\n\r\t\v\f\x85\u2028\u2029]\s*")
_BLANK_LINES = re.compile(r"\n{3,}")


def refused_character(text: str) -> str | None:
    """The first character a notice may not hold, as ``U+0000``, or None."""
    found = _REFUSED.search(text)
    return f"U+{ord(found.group()):04X}" if found else None


def control_character_in(data: Any) -> str | None:
    """Where a raw record (nested dicts and lists) holds a refused character, and which:
    ``buyer.name: holds a control character (U+0000)``; never the text itself."""
    for where, text in _strings(data):
        if found := refused_character(text):
            return f"{where or 'value'}: holds a control character ({found})"
    return None


def _strings(data: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(data, str):
        yield where, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(value, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            yield from _strings(value, f"{where}.{index}" if where else str(index))


def repaired(text: str) -> str:
    """Mojibake undone, line breaks normalised to ``\\n``."""
    return ftfy.fix_text(text, REPAIR)


def paragraphs(text: str) -> str:
    """A long text's lines without the indentation XML or forms leave around them."""
    lines = [line.strip() for line in text.splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def single_line(text: str) -> str:
    """Line breaks and tabs, with the spaces around them, made one space."""
    return _LINE_BREAKS.sub(" ", text)


def is_damaged(text: str | None) -> bool:
    return bool(text) and REPLACEMENT in str(text)
