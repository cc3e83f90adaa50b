"""What applying a batch of provider events did: counts only, logged and stored with the batch."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApplyOutcome:
    """What applying a batch did (counts only: this is logged and stored)."""

    events: int = 0
    duplicates: int = 0
    uncorrelated: int = 0
    unknown_types: int = 0
    state_changes: int = 0
    suppressions_added: int = 0
    consents_withdrawn: int = 0
    consents_regranted: int = 0
    not_applied: Counter[str] = field(default_factory=Counter)
    #: Purposes whose deliveries got a new bounce or spam complaint in this batch: what a
    #: complaint-rate check (mailer/campaigns) looks at after the batch is applied.
    purposes_hit: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "duplicates": self.duplicates,
            "uncorrelated": self.uncorrelated,
            "unknown_types": self.unknown_types,
            "state_changes": self.state_changes,
            "suppressions_added": self.suppressions_added,
            "consents_withdrawn": self.consents_withdrawn,
            "consents_regranted": self.consents_regranted,
            "not_applied": dict(self.not_applied),
            "purposes_hit": sorted(self.purposes_hit),
        }
