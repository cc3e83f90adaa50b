"""What a mail's HTML uses, judged against caniemail's data for Gmail and Outlook for Windows.

The HTML is read with ``html.parser`` and every ``style`` attribute with tinycss2. Each element,
attribute, CSS property and CSS value found is mapped to caniemail's feature slugs
(``html-table``, ``css-padding``, ``css-unit-calc``, ...); an element, attribute, property, unit or
function the mapping does not know is reported too, so nothing new slips by unjudged. The markup
inside ``<!--[if mso]>`` comments is read as well and judged for Outlook alone.

A use is a problem when the latest version caniemail lists for a watched client (Gmail on every
platform, Outlook on Windows: the Word engine) says ``n``; or says ``a`` (partial) with a note
that ``PARTIAL_RULES`` can decide and that holds for this use (padding outside a table cell,
``display`` other than ``none`` in Outlook, ...). Partial notes about the kind of account (Gmail's
apps reading another provider's mailbox) or with no rule are accepted.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import tinycss2
from tinycss2 import ast

from tests.conftest import shared_data

#: The clients every mail must render in: caniemail family -> its platforms watched (None: all).
WATCHED: dict[str, tuple[str, ...] | None] = {"gmail": None, "outlook": ("windows",)}
#: Client names as a message shows them.
CLIENT_NAMES = {"gmail": "Gmail", "outlook": "Outlook"}


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


#: Elements caniemail has a page for, by tag.
TAG_SLUGS: dict[str, str] = {
    **{
        tag: f"html-{tag}"
        for tag in _names(
            "abbr acronym address audio base bdi blockquote body code del dfn dialog div form hr img link "
            "marquee meter object p picture pre progress rp rt ruby select small span strike strong style "
            "svg table textarea video wbr"
        )
    },
    **{f"h{n}": "html-h1-h6" for n in range(1, 7)},
    **{tag: "html-lists" for tag in _names("ul ol li dl dt dd")},
    **{tag: "html-image-maps" for tag in _names("map area")},
    **{
        tag: "html-semantics"
        for tag in _names(
            "article aside details figcaption figure footer header main mark nav section summary time"
        )
    },
}
#: Elements caniemail has no page for: the plain HTML every client renders.
UNLISTED_TAGS = frozenset(
    _names(
        "html head meta title tbody thead tfoot tr td th a br b i u em center font sup sub caption col colgroup"
    )
)
#: Attributes caniemail has a page for.
ATTRIBUTE_SLUGS: dict[str, str] = {
    **{
        name: f"html-{name}"
        for name in _names(
            "align valign width height cellpadding cellspacing background role lang dir hidden required target "
            "srcset popover"
        )
    },
    **{f"aria-{name}": f"html-aria-{name}" for name in _names("describedby hidden label labelledby live")},
    "loading": "html-loading-attribute",
    "inert": "css-inert-attribute",
}
#: Attributes caniemail has no page for (``href`` is judged by its scheme below).
UNLISTED_ATTRIBUTES = frozenset(
    _names(
        "href style border bgcolor name content charset http-equiv class id alt src title colspan rowspan type xmlns"
    )
)
#: CSS properties caniemail has no page for, rendered by every client.
UNLISTED_PROPERTIES = frozenset({"color", "font-family", "font-style"})
#: CSS functions, by name.
FUNCTION_SLUGS: dict[str, str] = {
    "calc": "css-unit-calc",
    "min": "css-function-min",
    "max": "css-function-max",
    "clamp": "css-function-clamp",
    "var": "css-variables",
    "rgb": "css-rgb",
    "rgba": "css-rgba",
    "linear-gradient": "css-linear-gradient",
    "radial-gradient": "css-radial-gradient",
    "conic-gradient": "css-conic-gradient",
    "light-dark": "css-function-light-dark",
    **{name: "css-modern-color" for name in ("lab", "lch", "oklab", "oklch", "color")},
}
#: Table cells: the only elements Outlook for Windows pads.
CELLS = ("td", "th")
MSO_CONDITIONAL = re.compile(r"\[if [^\]]*\bmso\b[^\]]*\]>(?P<markup>.*)<!\[endif\]", re.DOTALL)


@dataclass(frozen=True)
class Use:
    """One use of a caniemail feature in a mail."""

    slug: str
    #: The element it is on ("" for the doctype and comments).
    tag: str
    #: How it is written: a declaration, an attribute or the element.
    written: str
    #: The declaration's or the attribute's value, lowercased.
    value: str = ""
    #: The element's own declarations (property -> value): a rule may look beside the use.
    style: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: Inside an ``<!--[if mso]>`` comment: only Outlook for Windows reads it.
    outlook_only: bool = False
    #: Between ``<body>`` and ``</body>``.
    in_body: bool = False


def _largest_px(value: str) -> float:
    return max((float(n) for n in re.findall(r"(-?\d+(?:\.\d+)?)px", value)), default=0.0)


def _number(value: str) -> bool:
    return re.fullmatch(r"\d+", value.strip()) is not None


def _single_colour(value: str) -> bool:
    return re.fullmatch(r"#[0-9a-f]{3,8}|[a-z]+", value.strip()) is not None


#: caniemail's partial-support notes that say when a use breaks: (slug, note) -> does it here?
PARTIAL_RULES: dict[tuple[str, str], Callable[[Use], bool]] = {
    ("css-padding", "Partial. Only supported on table cells."): lambda u: u.tag not in CELLS,
    ("css-border", "Buggy. Unreliable if used on a `<p>` or a `<div>`."): lambda u: u.tag in ("p", "div"),
    ("css-border", "Partial. A border can not be bigger than 8px."): lambda u: _largest_px(u.value) > 8,
    (
        "css-width",
        "Partial. Not supported on `<body>`, `<span>`, `<div>`, `<p>` or `<img>` elements.",
    ): lambda u: u.tag in ("body", "span", "div", "p", "img"),
    (
        "css-height",
        "Partial. Not supported on `<body>`, `<span>`, `<div>` or `<p>` elements.",
    ): lambda u: u.tag in ("body", "span", "div", "p"),
    ("css-max-width", "Partial. Only works on `<table>` elements."): lambda u: u.tag != "table",
    ("css-margin", "Partial. Not supported on `<span>` and `<body>` elements."): lambda u: (
        u.tag in ("span", "body")
    ),
    ("css-margin", "Partial. `auto` value is not supported."): lambda u: "auto" in u.value.split(),
    ("css-margin", "Partial. Negative values are not supported."): lambda u: (
        re.search(r"(^|\s)-\d", u.value) is not None
    ),
    ("css-display", "Partial. Only supports `display:none` (but not on `<img>`)."): lambda u: (
        u.value != "none" or u.tag == "img"
    ),
    (
        "css-line-height",
        "Buggy. `em` and `px` units behave weirdly. Use `mso-line-height-rule:exactly`.",
    ): lambda u: (
        re.search(r"\d(px|em)\b", u.value) is not None and u.style.get("mso-line-height-rule") != "exactly"
    ),
    ("css-line-height", "Partial. `normal` value is not supported."): lambda u: u.value == "normal",
    (
        "css-font-weight",
        "Partial support. `<number>` values between 0 and 599 are set as normal font weight. "
        "`<number>` values between 600 and 1000 are set as bold font weight.",
    ): lambda u: _number(u.value) and u.value not in ("400", "700"),
    ("css-text-decoration", "Partial. Not supported with multiple values."): lambda u: (
        len(u.value.split()) > 1
    ),
    ("css-text-decoration", "Partial. `overline` is not supported."): lambda u: "overline" in u.value,
    ("css-background", "Partial. Only `background-color` values are supported."): lambda u: (
        not _single_colour(u.value)
    ),
    ("css-text-align", "Partial. Flow-relative values `start` and `end` are not supported."): lambda u: (
        u.value in ("start", "end")
    ),
    ("css-text-transform", "Partial. `lowercase` value is not supported."): lambda u: u.value == "lowercase",
    ("css-font-size", "Partial support. `rem` values are not supported."): lambda u: (
        re.search(r"\drem\b", u.value) is not None
    ),
    (
        "html-align",
        "Partial. `left` and `right` do not work on `<table>` elements. Use `float:left` or `float:right` "
        "styles instead.",
    ): lambda u: u.tag == "table" and u.value in ("left", "right"),
    ("html-style", "Partial. Not supported inside the `<body>`."): lambda u: u.in_body,
    (
        "css-important",
        "Partial. Not supported inline. (See [email-bugs#31](https://github.com/hteumeuleu/email-bugs/issues/31))",
    ): lambda u: True,  # every declaration read here is in a style attribute
}


@functools.cache
def features() -> dict[str, dict[str, Any]]:
    """caniemail's features by slug (``../shared/data/email/caniemail_data.json``)."""
    data = json.loads(shared_data("email", "caniemail_data.json").read_text(encoding="utf-8"))
    return {feature["slug"]: feature for feature in data["data"]}


def latest_support(feature: Mapping[str, Any], *, outlook_only: bool) -> Iterator[tuple[str, str, str, str]]:
    """(family, platform, version, support) of the newest version of each watched client.

    caniemail lists a platform's versions oldest first.
    """
    for family, platforms in WATCHED.items():
        if outlook_only and family != "outlook":
            continue
        for platform, versions in feature["stats"].get(family, {}).items():
            if (platforms is None or platform in platforms) and versions:
                version = list(versions)[-1]
                yield family, platform, version, versions[version]


@dataclass
class Report:
    """What a mail uses that a watched client does not render, and the allowances it used."""

    problems: list[str] = field(default_factory=list)
    allowances_used: set[tuple[str, str]] = field(default_factory=set)


def _read(html: str) -> _Reader:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    return reader


def uses(html: str) -> list[Use]:
    """Every use of a caniemail feature in a mail's HTML."""
    return _read(html).uses


def judge(html: str, allowed: Mapping[tuple[str, str], str]) -> Report:
    """Read a mail's HTML and judge every feature it uses; ``allowed``: (slug, tag) -> reason."""
    reader = _read(html)
    report = Report(problems=list(reader.unknown))
    known = features()
    for use in reader.uses:
        if use.slug not in known:
            report.problems.append(f"{use.written} on <{use.tag}>: no caniemail feature {use.slug!r}")
            continue
        feature = known[use.slug]
        for family, platform, version, support in latest_support(feature, outlook_only=use.outlook_only):
            why = _why_broken(use, feature, support)
            if why is None:
                continue
            if (use.slug, use.tag) in allowed:
                report.allowances_used.add((use.slug, use.tag))
                continue
            report.problems.append(
                f"{use.slug}: {use.written} on <{use.tag or 'document'}> "
                f"({CLIENT_NAMES[family]} {platform} {version}: {why})"
            )
    report.problems = sorted(set(report.problems))
    return report


def _why_broken(use: Use, feature: Mapping[str, Any], support: str) -> str | None:
    letter, *marks = support.split()
    notes = feature.get("notes_by_num") or {}
    if letter == "n":
        return " ".join(["not supported", *(notes.get(mark.lstrip("#"), "") for mark in marks)]).strip()
    if letter != "a":
        return None
    for mark in marks:
        note = notes.get(mark.lstrip("#"), "")
        rule = PARTIAL_RULES.get((use.slug, note))
        if rule is not None and rule(use):
            return note
    return None


class _Reader(HTMLParser):
    """Lists the caniemail features a piece of HTML uses."""

    def __init__(self, *, outlook_only: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.outlook_only = outlook_only
        self.uses: list[Use] = []
        self.unknown: list[str] = []
        self.in_body = False

    def _use(
        self, slug: str, tag: str, written: str, value: str = "", style: Mapping[str, str] | None = None
    ) -> None:
        self.uses.append(
            Use(
                slug,
                tag,
                written,
                value.lower(),
                style or {},
                outlook_only=self.outlook_only,
                in_body=self.in_body,
            )
        )

    def handle_decl(self, decl: str) -> None:
        if decl.lower().startswith("doctype"):
            self._use("html-doctype", "", f"<!{decl}>")

    def handle_comment(self, data: str) -> None:
        self._use("html-comments", "", "<!-- -->")
        conditional = MSO_CONDITIONAL.fullmatch(data.strip())
        if conditional:
            inner = _Reader(outlook_only=True)
            inner.in_body = self.in_body
            inner.feed(conditional["markup"])
            inner.close()
            self.uses.extend(inner.uses)
            self.unknown.extend(inner.unknown)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.in_body = True
        values = {name: value or "" for name, value in attrs}
        if tag in TAG_SLUGS:
            self._use(TAG_SLUGS[tag], tag, f"<{tag}>")
        elif tag == "input":
            self._use(f"html-input-{values.get('type', 'text').lower()}", tag, f"<{tag}>")
        elif tag == "button":
            self._use(f"html-button-{values.get('type', 'submit').lower()}", tag, f"<{tag}>")
        elif tag not in UNLISTED_TAGS:
            self.unknown.append(f"<{tag}>: an element the checker does not know (map it to caniemail)")
        if tag == "meta" and values.get("name", "").lower() == "color-scheme":
            self._use("html-meta-color-scheme", tag, '<meta name="color-scheme">')
        style = self._style(tag, values.get("style", ""))
        for name, value in values.items():
            if name in ATTRIBUTE_SLUGS:
                self._use(ATTRIBUTE_SLUGS[name], tag, f'{name}="{value}"', value, style)
            elif name == "href" and value.lower().startswith("mailto:"):
                self._use("html-mailto-links", tag, 'href="mailto:..."')
            elif name == "href" and value.startswith("#"):
                self._use("html-anchor-links", tag, 'href="#..."')
            elif name not in UNLISTED_ATTRIBUTES and not name.startswith("xmlns:"):
                self.unknown.append(f"{name}= on <{tag}>: an attribute the checker does not know")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.in_body = False

    def _style(self, tag: str, text: str) -> dict[str, str]:
        """Record the uses of an element's style attribute; its declarations by property."""
        nodes = tinycss2.parse_blocks_contents(text, skip_whitespace=True)
        declarations = [n for n in nodes if isinstance(n, ast.Declaration)]
        style = {d.lower_name: tinycss2.serialize(d.value).strip().lower() for d in declarations}
        for node in nodes:
            if isinstance(node, ast.Comment):
                self._use("css-comments", tag, "/* */", style=style)
            elif not isinstance(node, ast.Declaration):
                self.unknown.append(f"style={text!r} on <{tag}>: not CSS declarations")
        for declaration in declarations:
            name, value = declaration.lower_name, style[declaration.lower_name]
            written = f"{name}:{value}"
            slug = _property_slug(name)
            if slug is not None:
                self._use(slug, tag, written, value, style)
            elif name not in UNLISTED_PROPERTIES and not name.startswith("mso-"):
                self.unknown.append(f"{written} on <{tag}>: a property the checker does not know")
            if declaration.important:
                self._use("css-important", tag, f"{written} !important", value, style)
            if name == "display" and value in ("flex", "inline-flex", "grid", "inline-grid", "none"):
                self._use(f"css-display-{value.removeprefix('inline-')}", tag, written, value, style)
            for slug_or_problem in _value_slugs(name, declaration.value):
                if slug_or_problem.startswith("css-"):
                    self._use(slug_or_problem, tag, written, value, style)
                else:
                    self.unknown.append(f"{written} on <{tag}>: {slug_or_problem}")
        return style


def _property_slug(name: str) -> str | None:
    """caniemail's page for a CSS property; None when it has none."""
    known = features()
    if name.endswith("-radius"):
        return "css-border-radius"
    if f"css-{name}" in known:
        return f"css-{name}"
    for box in ("margin", "padding"):
        if name in (f"{box}-inline", f"{box}-block"):
            return f"css-{box}-inline-block"
        if name.startswith((f"{box}-inline-", f"{box}-block-")):
            return f"css-{box}-{name.split('-')[1]}-start-end"
        if name in (f"{box}-top", f"{box}-right", f"{box}-bottom", f"{box}-left"):
            return f"css-{box}"
    if name in ("border-inline", "border-block"):
        return "css-border-inline-block"
    if name.startswith(("border-inline-", "border-block-")):
        return "css-border-inline-block-" + ("individual" if name.count("-") == 2 else "longhand")
    if name.startswith("border-"):
        return "css-border"
    if name in ("top", "right", "bottom", "left"):
        return "css-left-right-top-bottom"
    return None


def _value_slugs(name: str, tokens: list[Any]) -> Iterator[str]:
    """The caniemail pages of what a value is made of (units, functions, keywords); else a problem."""
    known = features()
    for token in tokens:
        if isinstance(token, ast.DimensionToken):
            unit = f"css-unit-{token.lower_unit}"
            yield unit if unit in known else f"the unit {token.unit!r} has no caniemail page"
        elif isinstance(token, ast.PercentageToken):
            yield "css-unit-percent"
        elif isinstance(token, ast.FunctionBlock):
            if token.lower_name in FUNCTION_SLUGS:
                yield FUNCTION_SLUGS[token.lower_name]
            elif token.lower_name != "url":
                yield f"the function {token.name}() has no caniemail page"
            yield from _value_slugs(name, token.arguments)
        elif isinstance(token, ast.IdentToken):
            if token.lower_value == "initial":
                yield "css-unit-initial"
            elif name == "font-family" and (
                token.lower_value == "system-ui" or token.lower_value.startswith("ui-")
            ):
                yield "css-sytem-ui"
