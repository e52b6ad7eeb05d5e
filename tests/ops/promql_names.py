"""The metric names a PromQL expression reads, and the names a /metrics page exports.

A small reader, enough for the expressions we ship (no PromQL parser exists for Python): strings,
label matchers, ranges and grouping clauses are taken out, then every identifier left that is not a
function call or a keyword is a metric name.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "inf", "nan",
})
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_DURATION_OR_NUMBER = re.compile(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+|ms|s|m|h|d|w|y)?\b", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_VALUES = re.compile(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
}


def metric_names(expression: str) -> set[str]:
    text = _STRING.sub('""', expression)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    text = _DURATION_OR_NUMBER.sub(" ", text)
    names = set()
    for found in _IDENTIFIER.finditer(text):
        if text[found.end():].lstrip().startswith("("):
            continue  # a function, or an aggregation before its argument
        if found.group(0).lower() in KEYWORDS:
            continue
        names.add(found.group(0))
    return names


def template_metric_names(query: str) -> set[str]:
    """Grafana's `label_values(metric, label)` names one metric; other template queries are PromQL."""
    found = _LABEL_VALUES.match(query.strip())
    return {found.group(1)} if found else metric_names(query)


def exported_names(exposition: str) -> set[str]:
    """Every sample name a /metrics page holds or declares (a labelled family with no child yet has
    no samples, but its HELP and TYPE lines say what it will hold)."""
    names = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names
