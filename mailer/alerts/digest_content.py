"""What a batch's digests show: its tenders and searches, each tender rendered once per process.

A tender's view (title, buyer, places, deadline, value, contact) is the same for every reader of
a locale, so it is rendered once and kept; whether its contact is shown is decided per batch, at
send time (policy article 5), and is part of the cache key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from babel.dates import format_time
from markupsafe import Markup
from sqlalchemy.orm import Session

from mailer.alerts.models import SavedSearch, Tender
from mailer.alerts.places import places
from mailer.alerts.windows import DIGEST_KIND
from mailer.db import id_in, in_chunks
from mailer.purposes import N_
from mailer.rendering import environment, gettext
from mailer.suppression import contacts

#: Tenders and searches read per query (SQLite's bound-parameter limit is 32,766).
READ_CHUNK = 5000
#: A deadline with its time of day ("26 novembre 2026 à 12:00").
DEADLINE_AT = N_("%(date)s at %(time)s")


class _ViewCache:
    """Tenders as rendered for a locale, shared by the batches a worker process handles.

    A window's tenders appear in every batch: rendering each once per process, not once per
    batch, halves a batch's work. The key holds what changes the rendering: the tender's last
    update and whether its contact is hidden (decided per batch, at send time).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> dict[str, Any] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Any, view: dict[str, Any]) -> None:
        with self._lock:
            self._items[key] = view
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: Rendered tenders kept per process: two locales of a 5,000-tender window, about 15 MB.
TENDER_VIEW_CACHE_SIZE = 10_000
_TENDER_VIEWS = _ViewCache(TENDER_VIEW_CACHE_SIZE)


@dataclass
class DigestContent:
    """The tenders and searches a batch's digests show, loaded in a few queries.

    A tender already rendered by this process (same last update, same contact visibility) is
    not read again: only its id and last update are, and its view comes from the cache.
    """

    views: dict[tuple[int, str], dict[str, Any]]
    searches: dict[int, str]

    @classmethod
    def load(cls, session: Session, needed: dict[str, set[int]], search_ids: set[int]) -> DigestContent:
        """``needed``: the tender ids shown in each locale; ``search_ids``: the searches named."""
        tender_ids = sorted(set().union(*needed.values())) if needed else []
        stamps: dict[int, Any] = {}
        for chunk in in_chunks(tender_ids, READ_CHUNK):
            stamps.update(
                (int(i), at)
                for i, at in session.execute(
                    sa.select(Tender.id, Tender.updated_at).where(id_in(session, Tender.id, chunk))
                )
            )
        # Checked at send time, like the gate: an opposition recorded after planning still wins.
        hidden = contacts.hidden_tenders(session, list(stamps))
        views: dict[tuple[int, str], dict[str, Any]] = {}
        missing: dict[int, list[str]] = defaultdict(list)
        for locale, ids in needed.items():
            for tender_id in ids:
                if tender_id not in stamps:
                    continue
                cached = _TENDER_VIEWS.get((tender_id, stamps[tender_id], locale, tender_id in hidden))
                if cached is None:
                    missing[tender_id].append(locale)
                else:
                    views[tender_id, locale] = cached
        for chunk in in_chunks(sorted(missing), READ_CHUNK):
            for row in session.execute(sa.select(*_TENDER_SHOWN).where(id_in(session, Tender.id, chunk))):
                for locale in missing[row.id]:
                    views[row.id, locale] = _render_tender(row, locale, hidden=row.id in hidden)
        searches: dict[int, str] = {}
        for chunk in in_chunks(sorted(search_ids), READ_CHUNK):
            searches.update(
                (int(i), str(n))
                for i, n in session.execute(
                    sa.select(SavedSearch.id, SavedSearch.name).where(id_in(session, SavedSearch.id, chunk))
                )
            )
        return cls(views=views, searches=searches)

    def view(self, tender_id: int, locale: str) -> dict[str, Any] | None:
        """A tender as a digest shows it in a locale; None when it is gone."""
        return self.views.get((tender_id, locale))


#: What a digest shows of a tender.
_TENDER_SHOWN = (
    Tender.id,
    Tender.title,
    Tender.buyer_name,
    Tender.buyer_town,
    Tender.contact_name,
    Tender.contact_email,
    Tender.contact_phone,
    Tender.departments,
    Tender.regions,
    Tender.deadline_on,
    Tender.deadline_time,
    Tender.value_cents,
    Tender.value_currency,
    Tender.url,
    Tender.updated_at,
)


def _render_tender(row: Any, locale: str, *, hidden: bool) -> dict[str, Any]:
    """A tender formatted and rendered for a locale, once per process (the same for every reader)."""
    filters = environment(locale).filters
    reference = places()
    where = [reference.department_label(d) for d in row.departments or []] or [
        reference.region_label(r) for r in row.regions or []
    ]
    deadline = filters["date"](row.deadline_on) if row.deadline_on else None
    if deadline and row.deadline_time is not None:
        at = format_time(row.deadline_time, format="short", locale=locale)
        deadline = gettext(locale, DEADLINE_AT) % {"date": deadline, "time": at}
    value = None
    if row.value_cents is not None:
        value = filters["money"](Decimal(row.value_cents) / 100, row.value_currency or "EUR")
    contact = None
    if not hidden and (row.contact_name or row.contact_email or row.contact_phone):
        contact = {"name": row.contact_name, "email": row.contact_email, "phone": row.contact_phone}
    fields = {
        "title": row.title,
        "url": row.url,
        "buyer": row.buyer_name,
        "town": row.buyer_town,
        "places": ", ".join(where),
        "deadline": deadline,
        "value": value,
        "contact": contact,
    }
    env = environment(locale)
    view = {
        "html": Markup(env.get_template(f"email/{DIGEST_KIND}/_tender.html").render(tender=fields).strip()),
        "text": "\n" + env.get_template(f"email/{DIGEST_KIND}/_tender.txt").render(tender=fields).strip("\n"),
    }
    _TENDER_VIEWS.put((row.id, row.updated_at, locale, hidden), view)
    return view
