"""Render budgets: a campaign template that would build a huge mail, or loop for ages, is refused
at create with the reason; a worker rendering one records a failure instead of running out of
memory; what is really small is never refused."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from mailer.campaigns import content
from mailer.campaigns.content import LocaleContent
from mailer.errors import RenderBudgetExceeded, TemplateProblem


def check(html: str, text: str = "{{ greeting }}", subject: str = "Offres") -> None:
    content.check_content(
        {"fr": LocaleContent("fr", subject, html, text)},
        purpose="nouma_offers",
        partner=None,
        campaign_name="Offre de Noël",
    )


@pytest.mark.parametrize(
    ("html", "says"),
    [
        # a 60-byte loop that wrote a 205 MB mail
        ("{% for a in 'x'*99999 %}{% for b in 'x'*9999 %}xx{% endfor %}{% endfor %}", "characters|takes"),
        # a gigabyte built by one replace, as a filter and as a method
        ("{{ ('a'*99999)|replace('a', 'b'*99999) }}", "result too large"),
        ("{{ ('a'*99999).replace('a', 'b'*99999) }}", "result too large"),
        # ten billion turns of a loop that writes nothing
        ("{% for a in 'x'*99999 %}{% for b in 'x'*99999 %}{% endfor %}{% endfor %}", "takes more than"),
        # padding asked for by a format, a method or a filter
        ("{{ '%0999999999d' % 1 }}", "format width"),
        ("{{ '{:>999999999}'.format(1) }}", "format width"),
        ("{{ 'x'.center(999999999) }}", "width over"),
        ("{{ 'x'|center(999999999) }}", "width over"),
        ("{{ 'x'|indent(999999999) }}", "width over"),
        ("{{ '%s'|format('x') * 99999 * 99999 }}", "too large"),
        ("{{ ('x'*99999).join('y'*99999) }}", "result too large"),
    ],
)
def test_content_that_would_explode_is_refused_at_create_quickly_and_in_little_memory(html, says):
    # When the marketing team creates a campaign with it
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateProblem) as refused:
            check(html)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Then it is refused with the file and the reason, within seconds and megabytes
    assert "fr/body.html" in str(refused.value)
    assert any(reason in str(refused.value) for reason in says.split("|"))
    assert time.monotonic() - started < 10
    assert peak < 50_000_000


@pytest.mark.parametrize(
    "html",
    [
        "<p>{{ 400 * 400 }}</p>",
        "<p>{{ 12 * 99.90 }} €</p>",
        "<p>{{ '%05d' % 42 }} {{ '{:>10}'.format('x') }} {{ 'x'|center(40) }}</p>",
        "{% for i in 'abcdefghij' * 10 %}<p>{{ i }}</p>{% endfor %}",
        "<p>{{ ('a' * 1000)|replace('a', 'bb') }}</p>",
    ],
)
def test_ordinary_arithmetic_and_loops_pass(html):
    check(html)


def test_a_mail_over_the_configured_size_is_refused_at_create(monkeypatch):
    from mailer.config import reset_settings

    monkeypatch.setenv("MAILER_MAX_MESSAGE_BYTES", "50000")
    reset_settings()
    with pytest.raises(TemplateProblem, match=r"over the 50,000 allowed|more than 50,000 characters"):
        check("{% for i in 'x' * 300 %}<p>" + "Une offre de Noël. " * 10 + "</p>{% endfor %}")


def test_a_worker_rendering_an_exploding_template_stops_at_the_budget():
    # Given content that passed no check (written before budgets existed)
    exploding = LocaleContent(
        "fr", "S", "{% for a in 'x'*99999 %}{% for b in 'x'*999 %}xx{% endfor %}{% endfor %}", "t"
    )
    # When a batch renders it, it stops at the budget instead of building 200 MB
    tracemalloc.start()
    try:
        with pytest.raises(RenderBudgetExceeded):
            content.render(exploding, purpose="nouma_offers", partner=None, campaign_name="x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 60_000_000
