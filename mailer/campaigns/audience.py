"""A campaign's audience: everyone with the purpose's consent, narrowed by an expression.

The expression is a small language over recipient attributes, written like a Python condition and
parsed with ``ast`` into SQL (never evaluated)::

    locale == "fr" and signed_up >= "2025-01-01"
    department in ["38", "73"] or region == "84"
    not (locale == "en") and "tender_alerts" in consents

Attributes with one value compare with ``== != < <= > >= in [...] not in [...]``; attributes
with several values (``consents``, and ``department`` / ``region`` from saved searches) match when
any of their values does (``department in ["38"]``, ``"38" in department``, ``department == "38"``).
The audience is resolved when the campaign starts, once, each recipient at most once, ordered by
locale so that a batch is mostly one locale (one SendGrid request).
"""

from __future__ import annotations

import ast
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailer import gate
from mailer.alerts.models import SavedSearch
from mailer.config import SUPPORTED_LOCALES
from mailer.db import json_array_values
from mailer.errors import InvalidInput
from mailer.models import Consent, Recipient
from mailer.purposes import PURPOSE_KEYS

#: Longest expression accepted.
MAX_EXPRESSION_LENGTH = 2000


@dataclass(frozen=True)
class ScalarAttribute:
    """An attribute with one value per recipient: a column expression."""

    column: Callable[[], Any]
    kind: type
    help: str
    choices: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SetAttribute:
    """An attribute with several values per recipient: a SELECT of (recipient_id, value) rows."""

    source: Callable[[], Any]
    help: str


def _searched(column: str) -> Callable[[], Any]:
    """(recipient, code) rows from the codes a recipient's active saved searches name."""

    def source() -> Any:
        codes = json_array_values(getattr(SavedSearch, column)).table_valued("value")
        # The function names a column of saved_searches: both databases unnest row by row
        # (PostgreSQL treats a function in FROM as LATERAL; SQLite's table-valued functions too).
        return (
            sa.select(SavedSearch.recipient_id.label("recipient_id"), codes.c.value.label("value"))
            .select_from(SavedSearch)
            .join(codes, sa.true())
            .where(SavedSearch.active.is_(True))
        )

    return source


def _consents() -> Any:
    return sa.select(Consent.recipient_id.label("recipient_id"), Consent.purpose.label("value")).where(
        Consent.granted.is_(True)
    )


ATTRIBUTES: dict[str, ScalarAttribute | SetAttribute] = {
    "locale": ScalarAttribute(lambda: Recipient.locale, str, "fr or en", SUPPORTED_LOCALES),
    "time_zone": ScalarAttribute(lambda: Recipient.time_zone, str, "e.g. Europe/Paris"),
    "signed_up": ScalarAttribute(
        lambda: Recipient.created_at, dt.date, "date the recipient was recorded, YYYY-MM-DD"
    ),
    "consents": SetAttribute(_consents, "purposes the recipient currently consents to"),
    "department": SetAttribute(
        _searched("departments"), "department codes of the recipient's saved searches"
    ),
    "region": SetAttribute(_searched("regions"), "region codes of the recipient's saved searches"),
}


def describe() -> list[tuple[str, str]]:
    """Each attribute and what it holds (for --help and errors)."""
    return [(n, a.help) for n, a in sorted(ATTRIBUTES.items())]


# -- parsing


def parse(expression: str) -> sa.ColumnElement[bool]:
    """The SQL condition over ``recipients`` an expression means; InvalidInput saying where it is wrong."""
    text = expression.strip()
    if not text:
        raise InvalidInput("audience: empty expression")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise InvalidInput(f"audience: longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise InvalidInput(f"audience: syntax error at column {error.offset}: {error.msg}") from None
    return _Compiler(text).condition(tree.body)


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, node: ast.AST, message: str) -> InvalidInput:
        column = getattr(node, "col_offset", 0) + 1
        return InvalidInput(f"audience: column {column}: {message}")

    def condition(self, node: ast.expr) -> sa.ColumnElement[bool]:
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(v) for v in node.values]
            return sa.and_(*parts) if isinstance(node.op, ast.And) else sa.or_(*parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return sa.not_(self.condition(node.operand))
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1:
                raise self.fail(node, "one comparison at a time (join them with and)")
            return self.compare(node, node.left, node.ops[0], node.comparators[0])
        raise self.fail(node, f'expected a comparison such as locale == "fr", got {ast.unparse(node)!r}')

    def attribute(self, node: ast.expr) -> tuple[str, ScalarAttribute | SetAttribute]:
        if not isinstance(node, ast.Name):
            raise self.fail(node, f"expected an attribute name, got {ast.unparse(node)!r}")
        if node.id in ATTRIBUTES:
            return node.id, ATTRIBUTES[node.id]
        raise self.fail(node, f"unknown attribute {node.id!r} (known: {', '.join(sorted(ATTRIBUTES))})")

    def constant(self, node: ast.expr, attribute: ScalarAttribute | None) -> Any:
        if (
            not isinstance(node, ast.Constant)
            or not isinstance(node.value, str | int | float)
            or isinstance(node.value, bool)
        ):
            raise self.fail(node, f"expected a quoted value or a number, got {ast.unparse(node)!r}")
        value = node.value
        if attribute is None:
            return str(value)
        if attribute.kind is dt.date:
            try:
                day = dt.date.fromisoformat(str(value))
            except ValueError:
                raise self.fail(node, f"expected a date YYYY-MM-DD, got {value!r}") from None
            return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        value = str(value)
        if attribute.choices and value not in attribute.choices:
            raise self.fail(node, f"{value!r} is not one of {', '.join(attribute.choices)}")
        return value

    def constants(self, node: ast.expr, attribute: ScalarAttribute | None) -> list[Any]:
        if not isinstance(node, ast.List | ast.Tuple | ast.Set) or not node.elts:
            raise self.fail(node, 'expected a non-empty list such as ["38", "73"]')
        return [self.constant(e, attribute) for e in node.elts]

    def compare(
        self, node: ast.Compare, left: ast.expr, op: ast.cmpop, right: ast.expr
    ) -> sa.ColumnElement[bool]:
        if isinstance(left, ast.Constant) and isinstance(op, ast.In | ast.NotIn):
            # "38" in department
            name, attribute = self.attribute(right)
            if not isinstance(attribute, SetAttribute):
                raise self.fail(node, f"{name!r} has one value: write {name} == {ast.unparse(left)}")
            matched = self.any_of(attribute, [self.constant(left, None)])
            return matched if isinstance(op, ast.In) else sa.not_(matched)
        name, attribute = self.attribute(left)
        if isinstance(attribute, SetAttribute):
            if isinstance(op, ast.Eq | ast.In):
                values = (
                    [self.constant(right, None)] if isinstance(op, ast.Eq) else self.constants(right, None)
                )
                return self.any_of(attribute, values)
            if isinstance(op, ast.NotEq | ast.NotIn):
                values = (
                    [self.constant(right, None)] if isinstance(op, ast.NotEq) else self.constants(right, None)
                )
                return sa.not_(self.any_of(attribute, values))
            raise self.fail(node, f"{name!r} has several values: use ==, !=, in or not in")
        column = attribute.column()
        if isinstance(op, ast.In | ast.NotIn):
            values = self.constants(right, attribute)
            return column.in_(values) if isinstance(op, ast.In) else column.not_in(values)
        value = self.constant(right, attribute)
        operators: dict[type, Callable[[Any, Any], sa.ColumnElement[bool]]] = {
            ast.Eq: lambda c, v: c == v,
            ast.NotEq: lambda c, v: c != v,
            ast.Lt: lambda c, v: c < v,
            ast.LtE: lambda c, v: c <= v,
            ast.Gt: lambda c, v: c > v,
            ast.GtE: lambda c, v: c >= v,
        }
        if type(op) not in operators:
            raise self.fail(node, "unsupported comparison (use == != < <= > >= in, not in)")
        if attribute.kind is dt.date and isinstance(op, ast.Eq | ast.NotEq | ast.LtE | ast.Gt):
            # A date means the whole day: signed_up == "2025-01-01" is any time that day.
            next_day = value + dt.timedelta(days=1)
            whole_day = {
                ast.Eq: sa.and_(column >= value, column < next_day),
                ast.NotEq: sa.or_(column < value, column >= next_day),
                ast.LtE: column < next_day,
                ast.Gt: column >= next_day,
            }
            return whole_day[type(op)]
        return operators[type(op)](column, value)

    @staticmethod
    def any_of(attribute: SetAttribute, values: Sequence[str]) -> sa.ColumnElement[bool]:
        source = attribute.source().subquery()
        return sa.exists().where(source.c.recipient_id == Recipient.id, source.c.value.in_(list(values)))


# -- resolving


def resolve(
    session: Session,
    purpose: str,
    expression: str | None,
    *,
    partner_list_versions: Sequence[str] | None = None,
) -> list[tuple[int, str]]:
    """(recipient id, locale) of everyone the campaign goes to, as of now, each once, by locale."""
    if purpose not in PURPOSE_KEYS:
        raise InvalidInput(f"unknown purpose {purpose!r}")
    condition = gate.allowed_now(
        Recipient.id,
        sa.literal(purpose),
        partner_list_versions=partner_list_versions,
    )
    query = sa.select(Recipient.id, Recipient.locale).where(condition)
    if expression:
        query = query.where(parse(expression))
    rows = session.execute(query.order_by(Recipient.locale, Recipient.id))
    return [(int(rid), str(locale)) for rid, locale in rows]


def count(
    session: Session,
    purpose: str,
    expression: str | None,
    *,
    partner_list_versions: Sequence[str] | None = None,
) -> int:
    """How many recipients the audience holds right now (shown at create)."""
    condition = gate.allowed_now(
        Recipient.id,
        sa.literal(purpose),
        partner_list_versions=partner_list_versions,
    )
    query = sa.select(sa.func.count()).select_from(Recipient).where(condition)
    if expression:
        query = query.where(parse(expression))
    return int(session.scalar(query) or 0)
