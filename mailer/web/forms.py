"""Reading request bodies: the RFC 8058 one-click POST and the preference forms, with size limits.

The one-click reader is strict about what it accepts (exactly ``List-Unsubscribe=One-Click``,
form-encoded or multipart) and lenient about how: RFC 8058 section 8.3 prints its multipart
example with delimiter lines that equal the declared boundary, without the leading ``--`` that
RFC 2046 asks for, and real senders copy it byte for byte.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request

#: The one-click body is 26 bytes form-encoded, 124 multipart (RFC 8058 section 8): anything
#: much larger is not one, and is refused before it is parsed.
MAX_ONE_CLICK_BODY = 2048
#: A preference form holds a handful of short fields.
MAX_FORM_BODY = 8192

ONE_CLICK_FIELD = ("List-Unsubscribe", "One-Click")

_BOUNDARY = re.compile(r'boundary=(?:"([^"]{1,200})"|([^;\s]{1,200}))', re.IGNORECASE)
_DISPOSITION = re.compile(r"^content-disposition:\s*form-data\s*;(.*)$", re.IGNORECASE)
_NAME = re.compile(r'(?:^|;)\s*name="([^"]*)"', re.IGNORECASE)


class BodyTooLarge(Exception):
    """Raised when a request body is over the limit of its endpoint."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it (or its announced length) passes ``limit`` bytes."""
    announced = request.headers.get("content-length")
    if announced is not None and (not announced.isdigit() or int(announced) > limit):
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_one_click(content_type: str | None, body: bytes) -> bool:
    """Whether a POST body is exactly the RFC 8058 one-click request, in either encoding."""
    kind = media_type(content_type)
    if kind == "application/x-www-form-urlencoded":
        return _urlencoded_fields(body) == [ONE_CLICK_FIELD]
    if kind == "multipart/form-data":
        return _multipart_fields(content_type or "", body) == [ONE_CLICK_FIELD]
    return False


def form_fields(content_type: str | None, body: bytes) -> list[tuple[str, str]] | None:
    """The fields of a form-encoded body; None when it is not one."""
    if media_type(content_type) != "application/x-www-form-urlencoded":
        return None
    return _urlencoded_fields(body)


def _urlencoded_fields(body: bytes) -> list[tuple[str, str]] | None:
    try:
        text = body.decode("ascii").strip("\r\n")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None


def _multipart_fields(content_type: str, body: bytes) -> list[tuple[str, str]] | None:
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    boundary = (match.group(1) or match.group(2)).encode("latin-1", errors="replace")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    # RFC 2046 delimiters are "--" + boundary; RFC 8058's printed example uses the bare boundary.
    delimiters = {f"--{boundary.decode('latin-1')}", boundary.decode("latin-1")}
    closers = {d + "--" for d in delimiters}
    parts: list[list[str]] = []
    current: list[str] | None = None
    closed = False
    for line in lines:
        stripped = line.rstrip(" \t")
        if stripped in closers:
            if current is not None:
                parts.append(current)
            closed = True
            break
        if stripped in delimiters:
            if current is not None:
                parts.append(current)
            current = []
        elif current is not None:
            current.append(line)
    if not closed or not parts:
        return None
    fields = []
    for part in parts:
        if "" not in part:
            return None
        split = part.index("")
        headers, value = part[:split], "\n".join(part[split + 1 :])
        name = None
        for header in headers:
            disposition = _DISPOSITION.match(header)
            if disposition is not None:
                params = disposition.group(1)
                # A file part is not a form field (RFC 8058 senders never send one).
                if re.search(r"(?:^|;)\s*filename\*?=", params, re.IGNORECASE):
                    return None
                found = _NAME.search(params)
                name = found.group(1) if found else None
        if name is None:
            return None
        fields.append((name, value))
    return fields
