"""French departments and regions, and how NUTS 2016 codes and postal codes map to them.

Read from the shipped reference file (INSEE COG joined with NUTS 2016, see data/README.md): the
101 departments, and the overseas collectivities (975, 977, 978, 984, 986, 987, 988), which
belong to no region and have no NUTS code. Corsica's departments are 2A and 2B; notices still
write its former code 20, which names both (``department_codes``) unless a postal code decides.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DEPARTMENTS_FILE = Path(__file__).parent / "data" / "departements_fr.csv"
#: Corsica's code before 1976, still written by notices: it names both of today's departments.
LEGACY_CORSICA = "20"
CORSICA = ("2A", "2B")
#: Overseas collectivities whose postal codes are Guadeloupe's (971xx).
POSTAL_CODE_COLLECTIVITIES = {"97133": "977", "97150": "978"}
#: Postal code prefixes of the overseas departments and collectivities (La Poste's list: 977xx
#: and 978xx are CEDEX codes of La Réunion, not Saint-Barthélemy or Saint-Martin).
OVERSEAS_POSTAL_PREFIXES = frozenset({"971", "972", "973", "974", "975", "976", "986", "987", "988"})


@dataclass(frozen=True)
class Department:
    """One French department (or overseas collectivity) and its region."""

    code: str
    name: str
    #: Empty for the overseas collectivities, which belong to no region.
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
        if code in POSTAL_CODE_COLLECTIVITIES:
            return POSTAL_CODE_COLLECTIVITIES[code]
        if code.startswith(("97", "98")):
            return code[:3] if code[:3] in OVERSEAS_POSTAL_PREFIXES else None
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

    def department_codes(self, raw: str, postal_code: str | None = None) -> list[str]:
        """The departments a notice's code names: ``1`` -> ``01``; the legacy ``20`` -> the Corsican
        department of the postal code, or both; an unknown code -> none."""
        code = normalise_department(raw)
        if code == LEGACY_CORSICA:
            found = self.department_of_postal_code(postal_code)
            return [found] if found in CORSICA else list(CORSICA)
        return [code] if code in self.departments else []

    def regions_of(self, departments: Iterable[str]) -> list[str]:
        return _unique(
            self.departments[d].region_code
            for d in departments
            if d in self.departments and self.departments[d].region_code
        )

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
        regions={d.region_code: d.region_name for d in departments.values() if d.region_code},
        by_nuts3={d.nuts3: d.code for d in departments.values() if d.nuts3},
    )
