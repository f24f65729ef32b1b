"""The series a PromQL expression selects: metric names and label matchers, read with a small
tokenizer that knows PromQL's syntax well enough not to mistake a function, a keyword, a
label name in `by (...)`, a string or a duration for a metric.

Used to check that every series the Grafana dashboard and the alert rules query is one the
services export (tests/e2e/test_dashboard_series.py). Grafana's `$__range`-style variables
are accepted where PromQL takes a duration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Keywords that are never a metric: binary operators, modifiers, and the ones that take a
# parenthesised list of label names (skipped whole).
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
# Aggregations may be followed by `by (...)` rather than by their parenthesis.
_AGGREGATIONS = {
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
}

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_]))
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<identifier>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<operator>=~|!~|!=|==|>=|<=|[-+*/%^=<>,(){}\[\]:@])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    """One vector selector: `name{label="value", ...}`."""

    name: str
    matchers: tuple[Matcher, ...]

    def matches(self, name: str, labels: dict[str, str], *, ignore: frozenset[str] = frozenset()) -> bool:
        """Whether a sample is selected; matchers on labels in `ignore` (say, the target
        labels Prometheus adds at scrape time) are left out."""
        return name == self.name and all(m.matches(labels) for m in self.matchers if m.label not in ignore)


class PromQLSyntaxError(ValueError):
    """The tokenizer met something it cannot read."""


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise PromQLSyntaxError(f"cannot read {expression[position : position + 20]!r} in {expression!r}")
        position = match.end()
        kind = match.lastgroup or ""
        if kind not in {"space", "comment"}:
            tokens.append((kind, match.group()))
    return tokens


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def _matchers(tokens: list[tuple[str, str]], start: int) -> tuple[tuple[Matcher, ...], int]:
    """Label matchers from the token after `{` up to the matching `}`; returns the index after it."""
    found, index = [], start
    while True:
        if index >= len(tokens):
            raise PromQLSyntaxError("unclosed {")
        if tokens[index] == ("operator", "}"):
            break
        if tokens[index] == ("operator", ","):
            index += 1
            continue
        if index + 3 > len(tokens):
            raise PromQLSyntaxError("unclosed {")
        (label_kind, label), (_, op), (value_kind, value) = tokens[index : index + 3]
        if label_kind not in {"identifier", "string"} or op not in {"=", "!=", "=~", "!~"} or value_kind != "string":
            raise PromQLSyntaxError(f"bad label matcher near {label!r}")
        found.append(Matcher(_unquote(label) if label_kind == "string" else label, op, _unquote(value)))
        index += 3
    return tuple(found), index + 1


def _skip_group(tokens: list[tuple[str, str]], index: int, opening: str, closing: str) -> int:
    depth = 0
    while index < len(tokens):
        if tokens[index] == ("operator", opening):
            depth += 1
        elif tokens[index] == ("operator", closing):
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    raise PromQLSyntaxError(f"unbalanced {opening}{closing}")


def selectors(expression: str) -> list[Selector]:
    """Every vector selector in a PromQL expression, in order."""
    tokens = _tokens(expression)
    for opening, closing in ("()", "[]", "{}"):
        texts = [text for kind, text in tokens if kind == "operator"]
        if texts.count(opening) != texts.count(closing):
            raise PromQLSyntaxError(f"unbalanced {opening}{closing} in {expression!r}")
    found: list[Selector] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "identifier" and text in _LABEL_LIST_KEYWORDS:
            # `by (a, b)`; group_left may stand without a list.
            index = _skip_group(tokens, index + 1, "(", ")") if following == ("operator", "(") else index + 1
        elif kind == "operator" and text == "[":
            index = _skip_group(tokens, index, "[", "]")  # a range or subquery: durations only
        elif kind == "identifier" and (
            text.lower() in _KEYWORDS or text in _AGGREGATIONS or following == ("operator", "(")
        ):
            index += 1  # a keyword, a function or an aggregation
        elif kind == "identifier":
            matchers: tuple[Matcher, ...] = ()
            index += 1
            if following == ("operator", "{"):
                matchers, index = _matchers(tokens, index + 1)
            found.append(Selector(text, matchers))
        elif kind == "operator" and text == "{":
            matchers, index = _matchers(tokens, index + 1)
            names = [m.value for m in matchers if m.label == "__name__" and m.op == "="]
            if len(names) != 1:
                raise PromQLSyntaxError(f"a selector without a metric name needs __name__=: {expression!r}")
            found.append(Selector(names[0], tuple(m for m in matchers if m.label != "__name__")))
        else:
            index += 1
    return found


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression queries."""
    return {selector.name for selector in selectors(expression)}
