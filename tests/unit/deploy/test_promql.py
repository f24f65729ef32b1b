"""The PromQL reader the dashboard/alert series check relies on (tests/support/promql.py)."""

from __future__ import annotations

import pytest

from tests.support.promql import Matcher, PromQLSyntaxError, Selector, metric_names, selectors


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("up == 0", {"up"}),
        (
            'sum by (service, le) (rate(meer_http_request_seconds_bucket{route!~"/healthz"}[5m]))',
            {"meer_http_request_seconds_bucket"},
        ),
        ("sum(rate(a_total[$__rate_interval])) by (job) / ignoring(x) group_left(y) b", {"a_total", "b"}),
        ("histogram_quantile(0.95, sum without (instance) (rate(h_bucket[10m:1m])))", {"h_bucket"}),
        ("a unless b offset 15m and on(service) c > bool 1e3", {"a", "b", "c"}),
        ('label_replace(m, "dst", "$1", "src", "(by|offset)")', {"m"}),
        ('{__name__="meer_x", job="y"} + max_over_time(z[1h30m])', {"meer_x", "z"}),
        ('count_values("le", m2) * -Inf + NaN', {"m2"}),
        ('absent(up{job="mailer"}) or vector(0)', {"up"}),
        ("increase(m3[$__range]) @ end()", {"m3"}),
    ],
)
def test_reads_the_metric_names_and_nothing_else(expression: str, names: set[str]) -> None:
    assert metric_names(expression) == names


def test_reads_label_matchers() -> None:
    [selector] = selectors('rate(meer_hits_total{kind="open", outcome=~"record.*", x!="a\\"b"}[5m])')
    assert selector == Selector(
        "meer_hits_total",
        (Matcher("kind", "=", "open"), Matcher("outcome", "=~", "record.*"), Matcher("x", "!=", 'a"b')),
    )
    assert selector.matches("meer_hits_total", {"kind": "open", "outcome": "recorded"})
    assert not selector.matches("meer_hits_total", {"kind": "open", "outcome": "xrecorded"}), "regexes are anchored"
    assert not selector.matches("meer_hits_total", {"kind": "click", "outcome": "recorded"})
    assert selector.matches("meer_hits_total", {"outcome": "recorded", "x": "c"}, ignore=frozenset({"kind"}))


@pytest.mark.parametrize("expression", ['m{a="b"', "sum(m", "m{a=b}", "m ? 1"])
def test_refuses_what_it_cannot_read(expression: str) -> None:
    with pytest.raises((PromQLSyntaxError, ValueError)):
        selectors(expression)
