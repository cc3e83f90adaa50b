"""The XML documents of a file, a folder or a .zip archive, each with where it is.

A folder is read with its sub-folders, in name order; an archive member by member, never
extracted to disk (so no member name can reach outside), each read within ``MAX_NOTICE_BYTES``
whatever its header says (a zip bomb stops there). Files that are not ``.xml`` are named, not read.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

from mailer.alerts.tenders import Where

#: Larger than any notice TED publishes (its 100-lot example is 1.7 MB): a bigger file is refused.
MAX_NOTICE_BYTES = 50 * 1024 * 1024
#: Members of one archive read at most.
MAX_ARCHIVE_NOTICES = 200_000


def xml_documents(path: Path) -> Iterator[tuple[Where, bytes | None, str | None]]:
    """Each XML document of a file, a folder or a .zip: (where, content, or why it is not read)."""
    if path.is_dir():
        for member in sorted(p for p in path.rglob("*") if p.is_file()):
            name = str(member.relative_to(path))
            if not name.lower().endswith(".xml"):
                yield name, None, None
            elif member.stat().st_size > MAX_NOTICE_BYTES:
                yield name, None, _too_large()
            else:
                yield name, member.read_bytes(), None
    elif zipfile.is_zipfile(path):
        yield from _archive(path)
    elif path.stat().st_size > MAX_NOTICE_BYTES:
        yield "", None, _too_large()
    else:
        yield "", path.read_bytes(), None


def _archive(path: Path) -> Iterator[tuple[Where, bytes | None, str | None]]:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            if len(members) > MAX_ARCHIVE_NOTICES:
                yield "", None, f"more than {MAX_ARCHIVE_NOTICES} files in the archive"
                return
            for member in members:
                if not member.filename.lower().endswith(".xml"):
                    yield member.filename, None, None
                    continue
                with archive.open(member) as handle:
                    # Read one byte past the limit: the header's size may lie (a zip bomb).
                    content = handle.read(MAX_NOTICE_BYTES + 1)
                if len(content) > MAX_NOTICE_BYTES:
                    yield member.filename, None, _too_large()
                else:
                    yield member.filename, content, None
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as error:
        yield "", None, f"not a readable .zip archive ({error})"


def _too_large() -> str:
    return f"over {MAX_NOTICE_BYTES} bytes, larger than any notice: not read"
