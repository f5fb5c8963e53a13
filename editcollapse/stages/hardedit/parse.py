"""Pull JSON records out of a chat model's answer, however it is wrapped.

Generators answer with a JSON list in a code fence, a bare list, prose around it, a single object,
an object wrapping the list (``{"data": [...]}``), trailing commas, typographic quotes, Python-style
single quotes, or an answer cut off mid-list. The parser scans for balanced JSON values (aware of
strings), repairs the common slips, and falls back to the complete objects inside a value it cannot
read, so one broken record costs that record only. An object cut off (or run on) after all four
record fields is kept from those fields: small local generators often finish a record and then
ramble on inside it until the token cap.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
TRAILING_COMMA = re.compile(r",\s*([\]}])")
MISSING_COMMA = re.compile(r"}\s*{")
TYPOGRAPHIC = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})
RECORD_KEYS = {"prompt", "subject", "target_new", "ground_truth"}
STRING_FIELD = re.compile(r'\s*"([^"\\]+)"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass
class ParsedAnswer:
    """The JSON objects found in one answer, and what could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _opens_value(text: str, index: int) -> bool:
    """A single quote starts a (Python-style) string only where a JSON value or key may start."""
    before = text[:index].rstrip()
    return bool(before) and before[-1] in "{[,:"


def _matching_close(text: str, start: int) -> int | None:
    """Index of the bracket closing the one at ``start`` (strings and escapes respected), or None."""
    stack: list[str] = []
    in_string: str | None = None
    escaped = False
    pairs = {"[": "]", "{": "}"}
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == in_string:
                in_string = None
        elif char == '"' or char == "'" and stack and _opens_value(text, index):
            in_string = char
        elif char in pairs:
            stack.append(pairs[char])
        elif char in "]}":
            if not stack or stack.pop() != char:
                return None
            if not stack:
                return index
    return None


def _loads(span: str) -> Any:
    """``json.loads`` with repairs: trailing commas, missing commas between objects, Python literals."""
    attempts = [span, TRAILING_COMMA.sub(r"\1", MISSING_COMMA.sub("},{", span))]
    for attempt in attempts:
        try:
            return json.loads(attempt)
        except json.JSONDecodeError:
            continue
    try:
        return ast.literal_eval(attempts[-1])
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as error:  # TypeError: {{...}}
        raise ValueError(f"not JSON even after repairs ({type(error).__name__})") from error


def _flatten(value: Any, where: str, answer: ParsedAnswer) -> None:
    """Records from a parsed value: a list of objects, one object, or an object wrapping lists."""
    if isinstance(value, list):
        for index, element in enumerate(value):
            if isinstance(element, dict):
                _flatten(element, f"{where}[{index}]", answer)
            else:
                answer.errors.append(f"{where}[{index}]: not an object ({type(element).__name__})")
    elif isinstance(value, dict):
        if RECORD_KEYS & set(value):
            answer.records.append(value)
            return
        wrapped = [item for item in value.values() if isinstance(item, (list, dict))]
        if not wrapped:
            answer.errors.append(f"{where}: an object without any of the fields {sorted(RECORD_KEYS)}")
        for item in wrapped:
            _flatten(item, where, answer)


def _leading_fields(block: str, start: int) -> dict[str, str]:
    """The string fields an unclosed object at ``start`` opens with, up to the first that is not one."""
    fields: dict[str, str] = {}
    index = start + 1
    while match := STRING_FIELD.match(block, index):
        try:
            fields.setdefault(match.group(1), json.loads(f'"{match.group(2)}"'))
        except json.JSONDecodeError:
            break
        index = match.end()
    return fields


def _scan(block: str, answer: ParsedAnswer) -> bool:
    """Parse every top-level JSON value in ``block``; descend into spans that do not parse."""
    found = False
    cut_off = False
    index = 0
    while index < len(block):
        if block[index] not in "[{":
            index += 1
            continue
        end = _matching_close(block, index)
        if end is not None:
            try:
                value = _loads(block[index : end + 1])
            except ValueError:
                index += 1  # unreadable: look for complete objects inside it
                continue
            _flatten(value, f"value at character {index}", answer)
            found = True
            index = end + 1
        else:
            if not cut_off:
                answer.errors.append(f"value at character {index} is never closed (answer cut off?)")
                cut_off = True
            fields = _leading_fields(block, index) if block[index] == "{" else {}
            if RECORD_KEYS <= set(fields):
                answer.records.append({key: fields[key] for key in sorted(RECORD_KEYS)})
                found = True
            index += 1  # unclosed: look for complete objects inside it
    return found


def extract_records(text: str) -> ParsedAnswer:
    """All JSON objects in a chat answer (code fences first, else the whole text), with read errors."""
    answer = ParsedAnswer()
    normalised = text.translate(TYPOGRAPHIC)
    fenced = FENCE.findall(normalised)
    if fenced:
        found = [_scan(block, answer) for block in fenced]
        if not any(found):
            _scan(FENCE.sub(" ", normalised), answer)  # fences held no JSON: try the prose around them
    else:
        _scan(normalised, answer)
    if not answer.records and not answer.errors:
        answer.errors.append("no JSON object found in the answer")
    return answer
