"""The sandbox campaign templates run in, and the budgets that bound what one may build.

Jinja2's immutable sandbox keeps templates away from Python; it does not keep them from building
a mail of gigabytes or looping for hours. Here: no globals (no ``range``), every operation that
can multiply a text or a list is bounded before it runs (``*``, ``%``, ``**``, ``str.format``,
``center``, ``replace``...), a render writes at most a bounded number of characters, and at
``campaign create`` it also has a bounded time (a trace checks the clock on every template line),
so a loop that prints nothing is stopped too. What is refused is what is really too large:
``{{ 400 * 400 }}`` is fine.
"""

from __future__ import annotations

import functools
import re
import string
import sys
import time
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from mailer.errors import RenderBudgetExceeded

#: Longest text or list one operation may build (a campaign mail is a few kilobytes).
MAX_OPERATION_SIZE = 100_000
#: Largest number arithmetic may produce (prices, counts and years fit many times over).
MAX_NUMBER = 10**30
#: Widest padding a format may ask for (``%9999999d``, ``{:>9999999}``, ``center(9999999)``).
MAX_WIDTH = 1_000
#: Characters a render may write by default (a mail over this is refused, not sent).
DEFAULT_MAX_CHARACTERS = 2_000_000
#: Seconds a template may take to render at ``campaign create``: real ones take milliseconds.
CREATE_RENDER_SECONDS = 2.0

_PERCENT_WIDTH = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
_SPEC_NUMBERS = re.compile(r"\d+")


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _sized(value: Any) -> bool:
    return isinstance(value, str | list | tuple)


def _check_width(width: Any) -> None:
    if isinstance(width, int) and not isinstance(width, bool) and width > MAX_WIDTH:
        raise SecurityError(f"width over {MAX_WIDTH}")


def _check_percent_format(template: str) -> None:
    for match in _PERCENT_WIDTH.finditer(template):
        for group in match.groups():
            if group == "*" or (group and int(group) > MAX_WIDTH):
                raise SecurityError(f"format width over {MAX_WIDTH}")


def _check_brace_format(template: str) -> None:
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return
    for _, _, spec, _ in fields:
        if spec and ("{" in spec or any(int(n) > MAX_WIDTH for n in _SPEC_NUMBERS.findall(spec))):
            raise SecurityError(f"format width over {MAX_WIDTH}")


def _check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        occurrences = len(text) + 1 if old == "" else text.count(old)
        if isinstance(count, int) and count >= 0:
            occurrences = min(occurrences, count)
        if len(text) + occurrences * max(0, len(new) - len(old)) > MAX_OPERATION_SIZE:
            raise SecurityError("result too large")


#: ``str`` methods that can grow a text, and the check each runs before it is called.
_GROWING_METHODS: dict[str, Callable[..., None]] = {
    "center": lambda s, width, *a: _check_width(width),
    "ljust": lambda s, width, *a: _check_width(width),
    "rjust": lambda s, width, *a: _check_width(width),
    "zfill": lambda s, width, *a: _check_width(width),
    "expandtabs": lambda s, size=8, *a: _check_width(size * (s.count("\t") + 1)),
    "replace": _check_replace,
}


def _bounded_filter(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def checked(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not isinstance(a, Context | EvalContext | jinja2.Environment)]
        if name == "replace" and len(values) >= 3:
            _check_replace(str(values[0]), values[1], values[2], *values[3:4])
        elif name in ("center", "indent", "wordwrap", "truncate") and len(values) >= 2:
            _check_width(values[1])
        elif name == "format" and values:
            _check_percent_format(str(values[0]))
        for key in ("width", "length"):
            _check_width(kwargs.get(key))
        return original(*args, **kwargs)

    for attribute in ("jinja_pass_arg",):
        if hasattr(original, attribute):
            setattr(checked, attribute, getattr(original, attribute))
    return checked


class CampaignSandbox(ImmutableSandboxedEnvironment):
    """The sandbox campaign templates run in: no globals, every growing operation bounded."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and (abs(_number(left)) > 1_000 or abs(_number(right)) > 64):
            raise SecurityError("exponent too large")
        if operator == "*":
            if _sized(left) or _sized(right):
                length, times = (len(left), _number(right)) if _sized(left) else (len(right), _number(left))
                if length * times > MAX_OPERATION_SIZE:
                    raise SecurityError("result too large")
            elif abs(_number(left) * _number(right)) > MAX_NUMBER:
                raise SecurityError("number too large")
        if operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja hands templates a wrapper of str.format: check the widths before it formats
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_brace_format(template)
            return wrapped(*args, **kwargs)

        return checked

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", None)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str) and name in _GROWING_METHODS:
            _GROWING_METHODS[name](owner, *args, **kwargs)
        if isinstance(owner, str) and name == "join" and args:
            items = list(args[0])
            if sum(len(str(i)) for i in items) + len(owner) * len(items) > MAX_OPERATION_SIZE:
                raise SecurityError("result too large")
            args = (items, *args[1:])
        return super().call(__context, __obj, *args, **kwargs)


@functools.cache
def sandbox(html: bool) -> CampaignSandbox:
    """The sandbox for HTML parts (autoescaped) or text parts (subject, text body)."""
    env = CampaignSandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    # Nothing but the fixed variables: no range(), lipsum(), dict(), cycler().
    env.globals.clear()
    for name in ("replace", "center", "indent", "wordwrap", "truncate", "format"):
        env.filters[name] = _bounded_filter(name, env.filters[name])
    return env


def render_bounded(
    name: str,
    template: jinja2.Template,
    context: dict[str, Any],
    *,
    max_characters: int = DEFAULT_MAX_CHARACTERS,
    seconds: float | None = None,
) -> str:
    """Render, stopping with RenderBudgetExceeded past ``max_characters`` or ``seconds``."""
    written = 0
    chunks: list[str] = []
    deadline = time.monotonic() + seconds if seconds is not None else None
    previous = sys.gettrace()

    def clock(frame: Any, event: str, arg: Any) -> Any:
        if deadline is not None and time.monotonic() > deadline:
            raise RenderBudgetExceeded(
                f"{name}: takes more than {seconds:g} s to render; loops must be small"
            )
        return clock

    if deadline is not None:
        sys.settrace(clock)
    try:
        for chunk in template.generate(context):
            written += len(chunk)
            if written > max_characters:
                raise RenderBudgetExceeded(
                    f"{name}: renders more than {max_characters:,} characters; a mail is read by a person"
                )
            chunks.append(chunk)
    finally:
        if deadline is not None:
            sys.settrace(previous)
    return "".join(chunks)
