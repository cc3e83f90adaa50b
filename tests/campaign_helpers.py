"""Builders for campaign tests: content folders, campaigns, and running batches step by step."""

from __future__ import annotations

from collections import Counter, deque
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from mailer.campaigns import batches, content, fanout, lifecycle
from mailer.campaigns.models import Campaign, CampaignBatch
from mailer.db import session_scope
from mailer.models import Delivery

CONTENT: dict[str, dict[str, str]] = {
    "fr": {
        "subject.txt": "{{ greeting }} nos offres de saison",
        "body.html": (
            "<p>{{ greeting }}</p>\n"
            "<p>Bonjour {{ first_name }}, découvrez nos offres {{ partner_name }}.</p>\n"
            '<p><a href="{{ preferences_url }}">Vos préférences</a></p>\n'
        ),
        "body.txt": "{{ greeting }}\n\nBonjour {{ first_name }}, découvrez nos offres {{ partner_name }}.\n",
    },
    "en": {
        "subject.txt": "{{ greeting }} our season's offers",
        "body.html": "<p>{{ greeting }}</p>\n<p>Hi {{ first_name }}, see our offers.</p>\n",
        "body.txt": "{{ greeting }}\n\nHi {{ first_name }}, see our offers.\n",
    },
}


def write_content(root: Path, files: dict[str, dict[str, str]] | None = None) -> Path:
    """A content folder DIR/<locale>/<file>."""
    for locale, parts in (files or CONTENT).items():
        (root / locale).mkdir(parents=True, exist_ok=True)
        for name, text in parts.items():
            (root / locale / name).write_text(text, encoding="utf-8")
    return root


def new_campaign(root: Path, purpose: str = "nouma_offers", **options: Any) -> int:
    contents = content.read_content_dir(write_content(root))
    with session_scope() as session:
        return lifecycle.create(
            session, name=options.pop("name", "Test campaign"), purpose=purpose, contents=contents, **options
        ).id


def queue_and_start(campaign_id: int) -> list[int]:
    with session_scope() as session:
        lifecycle.queue(session, campaign_id)
    return fanout.start(campaign_id)


def drain(batch_ids: list[int], *, max_passes: int = 10_000) -> list[int]:
    """Run batches the way workers would, in order, until none is released; returns the ones put back."""
    todo = deque(batch_ids)
    again: list[int] = []
    passes = 0
    while todo and passes < max_passes:
        passes += 1
        batch_id = todo.popleft()
        step = batches.run(batch_id)
        if step.again_in_ms is not None:
            again.append(batch_id)
        todo.extend(step.release)
    return again


def campaign(campaign_id: int) -> Campaign:
    with session_scope(readonly=True) as session:
        found = session.get(Campaign, campaign_id)
        assert found is not None
        return found


def batch_states(campaign_id: int) -> Counter[str]:
    with session_scope(readonly=True) as session:
        return Counter(
            str(s)
            for s in session.scalars(
                sa.select(CampaignBatch.state).where(CampaignBatch.campaign_id == campaign_id)
            )
        )


def records_per_recipient(campaign_id: int) -> Counter[int]:
    with session_scope(readonly=True) as session:
        return Counter(
            session.scalars(
                sa.select(Delivery.recipient_id).where(Delivery.belongs_to == f"campaign:{campaign_id}")
            )
        )


def outcomes(campaign_id: int) -> Counter[tuple[str, str | None]]:
    with session_scope(readonly=True) as session:
        return Counter(
            (str(state), reason)
            for state, reason in session.execute(
                sa.select(Delivery.state, Delivery.skip_reason).where(
                    Delivery.belongs_to == f"campaign:{campaign_id}"
                )
            )
        )
