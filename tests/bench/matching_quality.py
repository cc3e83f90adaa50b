"""Precision and recall of keyword matching on the hand-judged evaluation set.

``tests/data/matching_judgements.csv`` holds keyword x notice pairs from the shared TED notices,
each judged by reading the notice (relevant: the notice speaks of what the keyword names; not
relevant: only a look-alike word, or an excluded term, is there). This prints the precision and
recall of today's matching (word forms) beside the previous rule (exact folded words), and the
pairs where today's matching and the judgement disagree.

Run: ``.venv/bin/python -m tests.bench.matching_quality`` (``--misses`` lists the disagreements).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mailer.alerts.formats.ted import from_ted
from mailer.alerts.matching import Criteria, TenderFacts, naive_match, tender_text
from mailer.alerts.tenders import TenderRecord
from mailer.alerts.text import words

REPO = Path(__file__).resolve().parents[2]
JUDGEMENTS = REPO / "tests" / "data" / "matching_judgements.csv"
TED_NOTICES = REPO.parent / "shared" / "data" / "tenders" / "ted_fr_notices.jsonl"


@dataclass(frozen=True)
class Judgement:
    keywords: str
    doc_id: str
    relevant: bool
    reason: str


@dataclass(frozen=True)
class Notice:
    title: str | None
    description: str | None
    buyer: str | None


@dataclass(frozen=True)
class Score:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        relevant = self.true_positives + self.false_negatives
        return self.true_positives / relevant if relevant else 1.0


def read_judgements(path: Path = JUDGEMENTS) -> list[Judgement]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            Judgement(row["keywords"], row["doc_id"], row["relevant"] == "1", row["reason"])
            for row in csv.DictReader(handle)
        ]


def read_notices(path: Path = TED_NOTICES) -> dict[str, Notice]:
    notices = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        record = TenderRecord.model_validate(from_ted(raw))
        notices[raw["doc_id"]] = Notice(
            record.title, record.description, record.buyer.name if record.buyer else None
        )
    return notices


def matches_by_forms(keywords: str, notice: Notice) -> bool:
    """Today's matching, as a digest run applies it."""
    facts = TenderFacts(id=1, text=tender_text(notice.title, notice.description, notice.buyer))
    return naive_match(Criteria(keywords=keywords), facts)


def matches_exact_words(keywords: str, notice: Notice) -> bool:
    """The previous rule: exact folded words, phrases as consecutive words."""
    padded = (
        " " + " ".join(words(" ".join(filter(None, (notice.title, notice.description, notice.buyer))))) + " "
    )
    include, exclude = [], []
    for token in _query_tokens(keywords):
        excluded = token.startswith("-")
        phrase = " ".join(words(token.removeprefix("-")))
        if phrase:
            (exclude if excluded else include).append(f" {phrase} ")
    if include and not any(p in padded for p in include):
        return False
    return not any(p in padded for p in exclude)


def _query_tokens(keywords: str) -> Iterable[str]:
    import re

    for match in re.finditer(r'(-?)"([^"]*)"|(-?)([^\s"]+)', keywords):
        minus = match.group(1) or match.group(3)
        body = match.group(2) if match.group(2) is not None else match.group(4)
        yield (minus or "") + body


def score(
    judgements: Iterable[Judgement], notices: dict[str, Notice], matcher: Callable[[str, Notice], bool]
) -> tuple[Score, list[tuple[Judgement, bool]]]:
    tp = fp = fn = 0
    wrong = []
    for judgement in judgements:
        found = matcher(judgement.keywords, notices[judgement.doc_id])
        tp += found and judgement.relevant
        fp += found and not judgement.relevant
        fn += not found and judgement.relevant
        if found != judgement.relevant:
            wrong.append((judgement, found))
    return Score(tp, fp, fn), wrong


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--misses", action="store_true", help="list the pairs today's matching gets wrong")
    args = parser.parse_args(argv)
    judgements = read_judgements()
    notices = read_notices()
    relevant = sum(j.relevant for j in judgements)
    print(
        f"{len(judgements)} judged pairs ({relevant} relevant), {len({j.keywords for j in judgements})} queries"
    )
    for name, matcher in (("exact words (previous)", matches_exact_words), ("word forms", matches_by_forms)):
        result, wrong = score(judgements, notices, matcher)
        print(
            f"{name:24} precision {result.precision:.3f}  recall {result.recall:.3f}  "
            f"(found {result.true_positives} relevant, {result.false_positives} not relevant; "
            f"missed {result.false_negatives})"
        )
    if args.misses:
        for judgement, found in wrong:
            verdict = "found, not relevant" if found else "missed"
            print(f"  {verdict:20} {judgement.keywords!r:28} {judgement.doc_id}  {judgement.reason}")


if __name__ == "__main__":
    main()
