"""Statistics safe to share: no cell describes fewer than k people, nor can be recomputed.

The figures form a tree: purpose > campaign > week > department, each node the sum of its
children. A node describing fewer than ``k`` recipients is suppressed (primary suppression).
Published totals would then give a lone suppressed node back by subtraction: in "a parent is the
sum of its children", one unknown is one subtraction away (a child: the parent minus its published
siblings; a parent: the sum of its published children). So every such equation keeps zero or at
least two suppressed terms: a lone one takes its smallest published sibling with it, or a child
when it is the parent (complementary suppression), until none is alone. The equations of a tree
share no unknown but a parent, so no combination of them isolates a suppressed node
(tests/test_statistics.py attacks the published table to check it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Smallest number of recipients a published cell may describe, unless told otherwise.
DEFAULT_K = 10
#: What an aggregated dimension shows.
ALL = "(all)"
#: The dimensions, outermost first.
DIMENSIONS = ("purpose", "campaign", "week", "department")


@dataclass
class Cell:
    """One node of the tree: its key (``ALL`` where aggregated), its recipients and figures."""

    key: tuple[str, ...]
    recipients: int
    figures: dict[str, int]
    suppressed: bool = False

    @property
    def level(self) -> int:
        """How many dimensions the cell names (0 for a purpose total ... 3 for a department)."""
        return sum(part != ALL for part in self.key) - 1

    @property
    def parent(self) -> tuple[str, ...] | None:
        if self.level == 0:
            return None
        return (*self.key[: self.level], *[ALL] * (len(self.key) - self.level))


@dataclass
class Table:
    """Every cell of the tree, and the threshold it was protected with."""

    cells: dict[tuple[str, ...], Cell] = field(default_factory=dict)
    k: int = DEFAULT_K

    def children(self) -> dict[tuple[str, ...], list[Cell]]:
        groups: dict[tuple[str, ...], list[Cell]] = {}
        for cell in self.cells.values():
            if (parent := cell.parent) is not None:
                groups.setdefault(parent, []).append(cell)
        return groups


def protect(cells: Iterable[Cell], k: int = DEFAULT_K) -> Table:
    """Suppress every cell under ``k`` recipients, then enough siblings that none comes back."""
    if k < 2:
        raise ValueError("k must be at least 2")
    table = Table({cell.key: cell for cell in cells}, k)
    for cell in table.cells.values():
        cell.suppressed = cell.recipients < k
    groups = table.children()
    changed = True
    while changed:
        changed = False
        for parent_key, siblings in groups.items():
            parent = table.cells[parent_key]
            unknown = [c for c in [parent, *siblings] if c.suppressed]
            if len(unknown) != 1:
                continue
            # One unknown in "parent = sum of children" is one subtraction away: hide another
            shown = [c for c in siblings if not c.suppressed]
            if shown:
                min(shown, key=lambda c: (c.recipients, c.key)).suppressed = True
            else:
                parent.suppressed = True
            changed = True
    return table
