"""Parse the model's reply as it comes: prose around XML, several observations, truncation, entities, CDATA.

Regular expressions rather than an XML parser on purpose: model output is rarely a well-formed
document, and one bad element must not cost the valid ones beside it.
"""

from __future__ import annotations

import html
import re

import msgspec

from worker.storage import OBSERVATION_TYPES, SUMMARY_FIELDS

CONCEPTS = ("how-it-works", "why-it-exists", "what-changed", "problem-solution", "gotcha", "pattern", "trade-off")
SKIP_MARKERS = ("<skip", "<no_observation", "<no-observation")

_OBS = re.compile(r"<observation\b[^>]*>(.*?)(?:</observation\s*>|(?=<observation\b)|\Z)", re.DOTALL | re.IGNORECASE)
_SUMMARY = re.compile(r"<summary\b[^>]*>(.*?)(?:</summary\s*>|\Z)", re.DOTALL | re.IGNORECASE)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)(?:\]\]>|\Z)", re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")


class Observation(msgspec.Struct, kw_only=True):
    type: str
    title: str | None = None
    subtitle: str | None = None
    facts: list[str] = []
    narrative: str | None = None
    concepts: list[str] = []
    files_read: list[str] = []
    files_modified: list[str] = []


class Summary(msgspec.Struct, kw_only=True):
    request: str | None = None
    investigated: str | None = None
    learned: str | None = None
    completed: str | None = None
    next_steps: str | None = None
    notes: str | None = None


class ParseResult(msgspec.Struct, kw_only=True):
    observations: list[Observation] = []
    summary: Summary | None = None
    errors: list[str] = []
    skipped: bool = False  # the model said, explicitly or with an empty reply, that nothing is worth keeping
    saw_xml: bool = False


def _text(raw: str) -> str:
    """Element text: CDATA kept verbatim, entities decoded, stray tags dropped, whitespace tidied."""
    parts: list[str] = []
    pos = 0
    for m in _CDATA.finditer(raw):
        parts.append(html.unescape(_TAGS.sub("", raw[pos : m.start()])))
        parts.append(m.group(1))
        pos = m.end()
    parts.append(html.unescape(_TAGS.sub("", raw[pos:])))
    return "".join(parts).strip()


def _element(block: str, tag: str) -> tuple[str | None, bool]:
    """(text, closed) of the first `<tag>`; closed=False when the element was cut off."""
    m = re.search(rf"<{tag}\b[^>]*>(.*?)</{tag}\s*>", block, re.DOTALL | re.IGNORECASE)
    if m:
        text = _text(m.group(1))
        return (text or None), True
    m = re.search(rf"<{tag}\b[^>]*/>", block, re.IGNORECASE)
    if m:
        return None, True
    m = re.search(rf"<{tag}\b[^>]*>(.*)\Z", block, re.DOTALL | re.IGNORECASE)
    if m:
        return None, False
    return None, True


def _items(block: str, outer: str, inner: str) -> list[str]:
    m = re.search(rf"<{outer}\b[^>]*>(.*?)(?:</{outer}\s*>|\Z)", block, re.DOTALL | re.IGNORECASE)
    if not m:
        return []
    pattern = rf"<{inner}\b[^>]*>(.*?)</{inner}\s*>"
    found = [_text(x) for x in re.findall(pattern, m.group(1), re.DOTALL | re.IGNORECASE)]
    if not found and "<" not in m.group(1):
        found = [line.strip(" -*\t") for line in _text(m.group(1)).splitlines()]
    out: list[str] = []
    for item in found:
        if item and item not in out:
            out.append(item)
    return out


def _observation(block: str, index: int, errors: list[str]) -> Observation | None:
    type_text, _ = _element(block, "type")
    obs_type = (type_text or "").strip().lower()
    if obs_type not in OBSERVATION_TYPES:
        obs_type = OBSERVATION_TYPES[0]
    title, title_closed = _element(block, "title")
    subtitle, _ = _element(block, "subtitle")
    narrative, narrative_closed = _element(block, "narrative")
    facts = _items(block, "facts", "fact")
    concepts = [c.lower() for c in _items(block, "concepts", "concept")]
    obs = Observation(
        type=obs_type,
        title=title,
        subtitle=subtitle,
        facts=facts,
        narrative=narrative,
        concepts=concepts,
        files_read=_items(block, "files_read", "file"),
        files_modified=_items(block, "files_modified", "file"),
    )
    if not (obs.title or obs.narrative or obs.facts or obs.subtitle):
        reason = "truncated" if not (title_closed and narrative_closed) else "empty"
        errors.append(f"observation {index + 1}: {reason}, no title, narrative or facts")
        return None
    return obs


def parse_reply(text: str) -> ParseResult:
    result = ParseResult()
    stripped = (text or "").strip()
    if not stripped:
        result.skipped = True
        return result
    lowered = stripped.lower()
    if any(marker in lowered for marker in SKIP_MARKERS):
        result.skipped = True
    for index, m in enumerate(_OBS.finditer(stripped)):
        result.saw_xml = True
        obs = _observation(m.group(1), index, result.errors)
        if obs is not None:
            result.observations.append(obs)
    sm = _SUMMARY.search(stripped)
    if sm:
        result.saw_xml = True
        fields = {f: _element(sm.group(1), f)[0] for f in SUMMARY_FIELDS}
        if any(fields.values()):
            result.summary = Summary(**fields)
        else:
            result.errors.append("summary: no field could be read (truncated or empty)")
    if "<skip_summary" in lowered:
        result.saw_xml = True
        result.skipped = True
    return result
