"""French departments and regions, and how NUTS 2016 codes and postal codes map to them.

Read from the shipped reference file (INSEE COG joined with NUTS 2016, see data/README.md).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEPARTMENTS_FILE = Path(__file__).parent / "data" / "departements_fr.csv"


@dataclass(frozen=True)
class Department:
    """One French department and its region."""

    code: str
    name: str
    region_code: str
    region_name: str
    nuts3: str
    postal_prefix: str


@dataclass(frozen=True)
class Places:
    """Lookups built once from the reference file."""

    departments: dict[str, Department]
    regions: dict[str, str]
    by_nuts3: dict[str, str]

    def department_of_postal_code(self, postal_code: str | None) -> str | None:
        """The department of a French postal code (Corsica and overseas included), if it names one."""
        code = "".join(ch for ch in (postal_code or "") if ch.isdigit())
        if len(code) != 5:
            return None
        if code.startswith("97"):
            return code[:3] if code[:3] in self.departments else None
        if code.startswith("20"):
            # Corsica shares the 20 prefix: 200xx-201xx are Corse-du-Sud, 202xx-206xx Haute-Corse.
            return "2A" if code[2] in "01" else "2B"
        return code[:2] if code[:2] in self.departments else None

    def from_nuts(self, codes: Iterable[str]) -> tuple[list[str], list[str]]:
        """Departments (from NUTS 3 codes) and regions (from NUTS 1 to 3) named by NUTS codes.

        ``FR`` alone (the whole country, or "not said") names no place: a nationwide tender is
        not a tender of every department.
        """
        departments: list[str] = []
        regions: list[str] = []
        for raw in codes:
            code = (raw or "").strip().upper()
            if not code.startswith("FR") or len(code) < 3:
                continue
            if code in self.by_nuts3:
                departments.append(self.by_nuts3[code])
                continue
            for department in self.departments.values():
                if department.nuts3.startswith(code):
                    regions.append(department.region_code)
        return _unique(departments), _unique(regions)

    def regions_of(self, departments: Iterable[str]) -> list[str]:
        return _unique(self.departments[d].region_code for d in departments if d in self.departments)

    def department_label(self, code: str) -> str:
        department = self.departments.get(code)
        return f"{department.name} ({code})" if department else code

    def region_label(self, code: str) -> str:
        return self.regions.get(code, code)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def normalise_department(raw: str) -> str:
    """``1`` -> ``01``, ``2a`` -> ``2A``; the code as the reference file writes it."""
    code = str(raw).strip().upper()
    return code.zfill(2) if code.isdigit() and len(code) < 2 else code


@functools.cache
def places() -> Places:
    """The reference data, read once per process."""
    departments: dict[str, Department] = {}
    with DEPARTMENTS_FILE.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            departments[row["dep_code"]] = Department(
                code=row["dep_code"],
                name=row["dep_name"],
                region_code=row["region_code"],
                region_name=row["region_name"],
                nuts3=row["nuts3_2016"],
                postal_prefix=row["postal_prefix"],
            )
    return Places(
        departments=departments,
        regions={d.region_code: d.region_name for d in departments.values()},
        by_nuts3={d.nuts3: d.code for d in departments.values()},
    )
