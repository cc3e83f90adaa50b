"""eForms notices (UBL 2.3 XML), the only format TED publishes since 2024: a file, a folder, a .zip.

The XML is read by lxml with entities left unresolved, no network, no DTD, and libxml2's
limits on huge documents kept; a notice with a DOCTYPE is refused (eForms has none). Folders and
archives are read as ``documents.py`` says.

A notice is refused, with the reason and its business term (BT-...), when what identifies it
is missing or malformed (notice id, version, notice type, dispatch date, language, procedure
id), when its organisations or buyer do not resolve, when its title, a lot's identifier or a
main classification is missing, when an address is not a web address, or when a change notice
changes a notice of another procedure. The others become tenders:

- reference ``ted:<publication number>`` once published, else ``eforms:<notice id>``;
  ``notice_id`` BT-701, ``notice_version`` BT-757, ``procedure_id`` BT-04;
- title and description in French when the notice has them, else in its own language;
- buyer (name, town), its contact point, phone and e-mail (personal data);
- CPV: the procedure's main and additional codes, then the lots';
- place: the place of performance (NUTS, postal code in France), else the buyer's;
- deadline: the earliest lot's time limit for tenders (else for requests to participate),
  with its offset; estimated value: the procedure's, else the sum of the lots';
- URL: the procurement documents, else the buyer profile, else the buyer's site;
- kind: from the notice type's form type; a notice with a change section is a change, or a
  cancellation; kinds never announced are left out, named by their notice type.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from lxml import etree

from mailer.alerts.formats.base import RawNotice, email_or_none, estimated_value, place_of
from mailer.alerts.formats.documents import xml_documents
from mailer.alerts.notice_kinds import STORED_KINDS, NoticeKind, eforms_notice_types, left_out
from mailer.alerts.tenders import Where

NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
    "ext": "urn:oasis:names:specification:ubl:schema:xsd:CommonExtensionComponents-2",
    "efext": "http://data.europa.eu/p27/eforms-ubl-extensions/1",
    "efac": "http://data.europa.eu/p27/eforms-ubl-extension-aggregate-components/1",
    "efbc": "http://data.europa.eu/p27/eforms-ubl-extension-basic-components/1",
}
#: The root elements of eForms notices.
ROOTS = frozenset(
    {
        "ContractNotice",
        "PriorInformationNotice",
        "ContractAwardNotice",
        "BusinessRegistrationInformationNotice",
    }
)
#: Languages a text is taken in, in order, before the notice's own.
PREFERRED_LANGUAGES = ("FRA",)

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_NOTICE_ID = re.compile(_UUID)
_CHANGED_NOTICE = re.compile(rf"{_UUID}-\d{{2}}|\d{{1,8}}-\d{{4}}")
_LOT_ID = re.compile(r"(LOT|PAR|GLO)-\d{4}")
_WEB_ADDRESS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_EXTENSION = "ext:UBLExtensions/ext:UBLExtension/ext:ExtensionContent/efext:EformsExtension"
_URI_FIELDS = {
    "URI": "BT-15",
    "EndpointID": "BT-18/BT-509",
    "WebsiteURI": "BT-505",
    "BuyerProfileURI": "BT-508",
}


def parser() -> etree.XMLParser:
    """A parser that never resolves an entity, loads a DTD or reaches the network."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def looks_like(start: bytes) -> bool:
    return start.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


def notices(path: Path) -> Iterator[RawNotice]:
    for where, content, problem in xml_documents(path):
        if problem is not None:
            yield RawNotice(where, problem=problem)
        elif content is None:
            yield RawNotice(where, skipped="not an .xml file: not read")
        else:
            yield read_notice(where, content)


def read_notice(where: Where, content: bytes) -> RawNotice:
    """One notice document as a record's fields, or why it is refused or left out."""
    try:
        root = etree.fromstring(content, parser())
    except etree.XMLSyntaxError as error:
        at = f"{where}:{error.lineno}" if where else error.lineno or ""
        return RawNotice(at, problem=f"not well-formed XML ({error.msg})")
    if root.getroottree().docinfo.doctype:
        return RawNotice(where, problem="has a DOCTYPE, which no eForms notice has: not read")
    notice = _Notice(root)
    try:
        return notice.read(where)
    except _Refused as refused:
        return RawNotice(where, problem=str(refused))


class _Refused(Exception):
    """Raised while reading a notice that breaks an eForms rule; the message says which."""


class _Notice:
    """Reads one parsed notice."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.extension = root.find(_EXTENSION, NS)

    def text(self, element: Any, path: str) -> str | None:
        if element is None:
            return None
        found = element.findtext(path, namespaces=NS)
        return found.strip() or None if found else None

    def language_text(self, element: Any, path: str) -> str | None:
        """A text the notice may give in several languages: French first, else its own language."""
        if element is None:
            return None
        versions = {
            (e.get("languageID") or "").upper(): (e.text or "").strip()
            for e in reversed(element.findall(path, NS))
            if (e.text or "").strip()
        }
        order = [*PREFERRED_LANGUAGES, (self.text(self.root, "cbc:NoticeLanguageCode") or "").upper()]
        return next(
            (versions[lang] for lang in order if lang in versions), next(iter(versions.values()), None)
        )

    def read(self, where: Where) -> RawNotice:
        local = etree.QName(self.root).localname
        if local not in ROOTS:
            raise _Refused(f"not an eForms notice (its root element is {local})")
        notice_uuid = self.required("cbc:ID", _NOTICE_ID, "notice identifier (BT-701)")
        version = self.required("cbc:VersionID", re.compile(r"\d{2}"), "notice version (BT-757)")
        code = self.text(self.root, "cbc:NoticeTypeCode")
        notice_type = eforms_notice_types().get(code or "")
        if notice_type is None:
            raise _Refused(
                f"notice type (BT-02) {code!r} is not an eForms notice type"
                if code
                else "no notice type (BT-02)"
            )
        said = self.root.find("cbc:NoticeTypeCode", NS).get("listName")
        if said and said != notice_type.form_type:
            raise _Refused(f"notice type {code} is a {notice_type.form_type} notice, not {said} (BT-03)")
        issued = self.date(self.text(self.root, "cbc:IssueDate"))
        if issued is None:
            raise _Refused("no dispatch date (BT-05)")
        if not self.text(self.root, "cbc:NoticeLanguageCode"):
            raise _Refused("no notice language (BT-702)")
        kind = notice_type.kind
        if kind is NoticeKind.REGISTRATION:
            return RawNotice(where, skipped=left_out(notice_type.code, kind), kind=kind)
        # Prior information and pre-market consultations open no procedure yet.
        procedure_id = (
            self.optional("cbc:ContractFolderID", _NOTICE_ID, "procedure identifier (BT-04)")
            if kind in (NoticeKind.PLANNING, NoticeKind.CONSULTATION)
            else self.required("cbc:ContractFolderID", _NOTICE_ID, "procedure identifier (BT-04)")
        )
        kind, changes = self.changes(kind)
        if kind not in STORED_KINDS:
            return RawNotice(where, skipped=left_out(notice_type.code, kind), kind=kind)
        fields = self.fields(notice_uuid, version, procedure_id, issued)
        notes: list[str] = []
        value = fields.pop("value")
        fields["value"] = estimated_value(value[0], value[1], notes) if value else None
        fields.update(notice_kind=kind.value, notice_type=notice_type.code, changes_notice_id=changes)
        return RawNotice(where, fields=fields, kind=kind, notes=notes)

    def required(self, path: str, pattern: re.Pattern[str], name: str) -> str:
        value = self.optional(path, pattern, name)
        if not value:
            raise _Refused(f"no {name}")
        return value

    def optional(self, path: str, pattern: re.Pattern[str], name: str) -> str | None:
        value = self.text(self.root, path)
        if value and not pattern.fullmatch(value):
            raise _Refused(f"{name} {value!r} is malformed")
        return value

    def date(self, value: str | None) -> str | None:
        """``2019-11-21+01:00`` -> ``2019-11-21``."""
        match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(Z|[+-]\d{2}:\d{2})?", value or "")
        return match[1] if match else None

    def changes(self, kind: NoticeKind) -> tuple[NoticeKind, str | None]:
        """A notice with a change section changes (or cancels) the notice it names (BT-758)."""
        section = self.extension.find("efac:Changes", NS) if self.extension is not None else None
        if section is None:
            return kind, None
        changed = self.text(section, "efbc:ChangedNoticeIdentifier")
        if not changed or not _CHANGED_NOTICE.fullmatch(changed):
            raise _Refused("a change notice must name the notice it changes (BT-758)")
        if kind not in (NoticeKind.COMPETITION, NoticeKind.PLANNING):
            return kind, changed
        reasons = [e.text for e in section.findall("efac:ChangeReason/cbc:ReasonCode", NS)]
        return (NoticeKind.CANCELLATION if "cancel" in reasons else NoticeKind.CHANGE), changed

    def organisations(self) -> dict[str, Any]:
        companies: dict[str, Any] = {}
        found = (
            self.extension.findall("efac:Organizations/efac:Organization", NS)
            if self.extension is not None
            else []
        )
        for organisation in found:
            company = organisation.find("efac:Company", NS)
            identifier = self.text(company, "cac:PartyIdentification/cbc:ID")
            if not identifier:
                raise _Refused("an organisation has no identifier (OPT-200)")
            companies[identifier] = company
        return companies

    def fields(self, notice_uuid: str, version: str, procedure_id: str | None, issued: str) -> dict[str, Any]:
        companies = self.organisations()
        buyer_id = self.text(self.root, "cac:ContractingParty/cac:Party/cac:PartyIdentification/cbc:ID")
        if not buyer_id:
            raise _Refused("no buyer (OPT-300)")
        if buyer_id not in companies:
            raise _Refused(f"buyer {buyer_id} is not among the notice's organisations (OPT-300)")
        buyer = companies[buyer_id]
        project = self.root.find("cac:ProcurementProject", NS)
        title = self.language_text(project, "cbc:Name")
        if not title:
            raise _Refused("no title (BT-21)")
        self.check_addresses()
        lots = self.lots()
        publication = self.extension.find("efac:Publication", NS) if self.extension is not None else None
        published_as = self.text(publication, "efbc:NoticePublicationID")
        address = "cac:RealizedLocation/cac:Address"
        places = [
            project,
            *(
                lot.find("cac:ProcurementProject", NS)
                for lot in self.root.findall("cac:ProcurementProjectLot", NS)
            ),
        ]
        performance_nuts = [
            code
            for element in places
            if element is not None
            for code in (e.text or "" for e in element.findall(f"{address}/cbc:CountrySubentityCode", NS))
        ]
        french = [
            a
            for e in places
            if e is not None
            for a in e.findall(address, NS)
            if self.text(a, "cac:Country/cbc:IdentificationCode") == "FRA"
        ]
        buyer_address = buyer.find("cac:PostalAddress", NS)
        buyer_french = self.text(buyer_address, "cac:Country/cbc:IdentificationCode") == "FRA"
        contact = {
            "name": self.text(buyer, "cac:Contact/cbc:Name"),
            "email": email_or_none(self.text(buyer, "cac:Contact/cbc:ElectronicMail")),
            "phone": self.text(buyer, "cac:Contact/cbc:Telephone"),
        }
        return {
            "reference": f"ted:{published_as}" if published_as else f"eforms:{notice_uuid}",
            "title": title,
            "description": self.language_text(project, "cbc:Description"),
            "buyer": {
                "name": self.language_text(buyer, "cac:PartyName/cbc:Name"),
                "town": self.text(buyer_address, "cbc:CityName"),
            },
            "contact": contact if any(contact.values()) else None,
            "cpv": [
                code for element in places if element is not None for code in self.classifications(element)
            ],
            **place_of(
                performance_nuts,
                next((z for a in french if (z := self.text(a, "cbc:PostalZone"))), None),
                [self.text(buyer_address, "cbc:CountrySubentityCode") or ""],
                self.text(buyer_address, "cbc:PostalZone") if buyer_french else None,
            ),
            "published_on": self.date(self.text(publication, "efbc:PublicationDate")) or issued,
            "deadline": self.deadline(),
            "value": self.value(project),
            "url": self.documents_address()
            or self.text(buyer, "cbc:BuyerProfileURI")
            or self.text(buyer, "cbc:WebsiteURI"),
            "notice_id": notice_uuid,
            "notice_version": version,
            "procedure_id": procedure_id,
            "lots": lots,
        }

    def classifications(self, project: Any) -> list[str]:
        codes = []
        for path in ("cac:MainCommodityClassification", "cac:AdditionalCommodityClassification"):
            for element in project.findall(path, NS):
                code = self.text(element, "cbc:ItemClassificationCode")
                if not code:
                    raise _Refused("a classification without a code (BT-262/BT-263)")
                codes.append(code)
        return codes

    def lots(self) -> list[dict[str, Any]]:
        project = self.root.find("cac:ProcurementProject", NS)
        if project is None or project.find("cac:MainCommodityClassification", NS) is None:
            raise _Refused("no main classification (BT-262)")
        lots = []
        for lot in self.root.findall("cac:ProcurementProjectLot", NS):
            identifier = self.text(lot, "cbc:ID")
            if not identifier or not _LOT_ID.fullmatch(identifier):
                raise _Refused("a lot without an identifier (BT-137)")
            if identifier.startswith("GLO-"):
                continue
            lot_project = lot.find("cac:ProcurementProject", NS)
            if lot_project is None or lot_project.find("cac:MainCommodityClassification", NS) is None:
                raise _Refused(f"lot {identifier}: no main classification (BT-262)")
            lots.append(
                {
                    "id": identifier,
                    "title": self.language_text(lot_project, "cbc:Name"),
                    "cpv": self.classifications(lot_project),
                }
            )
        return lots

    def check_addresses(self) -> None:
        for name, term in _URI_FIELDS.items():
            for element in self.root.iter(f"{{{NS['cbc']}}}{name}"):
                value = (element.text or "").strip()
                if value and not _WEB_ADDRESS.fullmatch(value):
                    raise _Refused(f"an address ({term}) is not a web address")

    def deadline(self) -> str | None:
        found = []
        for period in ("cac:TenderSubmissionDeadlinePeriod", "cac:ParticipationRequestReceptionPeriod"):
            for lot in self.root.findall("cac:ProcurementProjectLot", NS):
                end = lot.find(f"cac:TenderingProcess/{period}", NS)
                day = self.text(end, "cbc:EndDate")
                if day and (moment := self.moment(day, self.text(end, "cbc:EndTime"))):
                    found.append(moment)
            if found:
                return min(found)
        return None

    def moment(self, day: str, time: str | None) -> str | None:
        """``2020-02-04+02:00`` and ``10:00:00+02:00`` -> ``2020-02-04T10:00:00+02:00``."""
        date = self.date(day)
        match = re.fullmatch(r"(\d{2}:\d{2}(?::\d{2})?)(Z|[+-]\d{2}:\d{2})?", time or "")
        if date is None:
            return None
        if match is None:
            return date
        offset = {"Z": "+00:00", None: ""}.get(match[2], match[2])
        return f"{date}T{match[1]}{offset}"

    def value(self, project: Any) -> tuple[Any, str | None] | None:
        path = "cac:RequestedTenderTotal/cbc:EstimatedOverallContractAmount"
        total = project.find(path, NS) if project is not None else None
        if total is not None and (total.text or "").strip():
            return total.text.strip(), total.get("currencyID")
        amounts = [
            lot.find(f"cac:ProcurementProject/{path}", NS)
            for lot in self.root.findall("cac:ProcurementProjectLot", NS)
        ]
        if not amounts or any(a is None or not (a.text or "").strip() for a in amounts):
            return None
        currencies = {a.get("currencyID") for a in amounts}
        if len(currencies) != 1:
            return None
        try:
            return str(sum(Decimal(a.text.strip()) for a in amounts)), currencies.pop()
        except InvalidOperation:
            return None

    def documents_address(self) -> str | None:
        references = self.root.findall(
            "cac:ProcurementProjectLot/cac:TenderingTerms/cac:CallForTendersDocumentReference", NS
        )
        ordered = sorted(
            references, key=lambda r: self.text(r, "cbc:DocumentType") != "non-restricted-document"
        )
        return next(
            (u for r in ordered if (u := self.text(r, "cac:Attachment/cac:ExternalReference/cbc:URI"))), None
        )
