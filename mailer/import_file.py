"""What every import file shares: read as UTF-8 text, split into numbered JSON records, and each
problem said in one line with its number (recipients, saved searches, tenders).

A byte order mark is not content; a file that is not UTF-8 names the line where it stops being so;
a record's first validation error names the field, never the value (it may be personal data).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mailer.errors import InvalidInput

#: A numbered row: its line and the JSON object read there, or why it is not one.
Row = tuple[int, dict[str, Any] | str]


def read_text(path: Path) -> str:
    """The whole file as text; InvalidInput naming the file (and line) when it cannot be."""
    if not path.exists():
        raise InvalidInput(f"{path}: no such file")
    if path.is_dir():
        raise InvalidInput(f"{path}: a folder, not a file")
    try:
        # utf-8-sig: a byte order mark, which some editors and exports write, is not content.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise InvalidInput(f"{path}:{line}: not UTF-8 text") from None


def json_lines(text: str) -> Iterator[Row]:
    """Each non-blank line's JSON object, or why it is not one, with its line number."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, f"not valid JSON ({error.msg} at column {error.colno})"
            continue
        yield number, value if isinstance(value, dict) else "expected a JSON object"


def first_error(error: ValidationError) -> str:
    """A record's first problem in one line: the field and what is wrong, never the value."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    message = message.removeprefix("Value error, ")
    return f"{where}: {message}" if where else message
