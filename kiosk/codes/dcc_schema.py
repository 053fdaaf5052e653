"""The EU DCC's official JSON schema, checked offline with ``jsonschema``.

A certificate names its schema version in ``ver``. Its payload is checked
against the official combined schema of that version (JSON Schema draft
2020-12, ehn-dcc-development/eu-dcc-schema, Apache License 2.0), packaged in
``dcc_spec/schema/<version>.json`` with its LICENSE and COMMIT: every release
from 1.0.0 to 1.3.3. A version the package does not hold is checked against
the nearest release: the newest one not above it (``1.3.5`` -> 1.3.3,
``1.2.2`` -> 1.2.1), the oldest for anything older than 1.0.0; a ``ver``
that is no version at all is checked against the newest release, whose
pattern for ``ver`` then refuses it.

Two things the schema leaves to its users are done here:

- value sets: a country (``co``) and a vaccine's maker (``v[].ma``) must
  be in the EU's sets, a rapid test's device on the EU list
  (:mod:`kiosk.codes.dcc_valuesets` says why these three and no others;
  optional, ``value_sets=False``);
- the formats ``date`` and ``date-time`` are checked, as
  :func:`parse_date` and :func:`parse_datetime` read them (the site's rules
  compare those dates, so what passes here must be readable there).

One the public test suite adds after the schema: exactly one of vaccination
(``v``), test (``t``) or recovery (``r``), which releases before 1.3.0 do
not require. And two changes later releases made, applied to earlier ones
(:func:`_as_verifiers_read_it`): the country's value set, and 80 characters
for texts that 1.0.0 to 1.2.1 limited to 50, as the EU's reference verifier
apps read them.

The validators are compiled once per process and version (a few
milliseconds each); checking one certificate then costs a fraction of a
millisecond. A problem is described by where it is and which rule it
breaks, never by the value it holds (that is personal data).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from kiosk.codes import dcc_valuesets

if TYPE_CHECKING:
    import jsonschema
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

# jsonschema (with referencing and attrs) takes some 50 ms to import on a
# laptop, several times that on a Pi: it is imported when the first
# certificate is checked, not by every command that imports the codes.

CERTIFICATE_TYPES = ("v", "t", "r")

_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")
_FULL_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")

# How each broken rule reads in the log (the value itself is never quoted).
_WHY: Mapping[str, str] = {
    "type": "has the wrong type",
    "pattern": "does not match its pattern",
    "maxLength": "is too long",
    "minItems": "is empty",
    "maxItems": "has more entries than allowed",
    "minimum": "is below the minimum",
    "maximum": "is above the maximum",
    "format": "is not a valid {value}",
    "oneOf": "has none, or more than one, of v, t, r",
    "anyOf": "has neither a transliterated surname nor forename",
    "valueset-uri": "is not in the EU value set",
}


# --- dates, as the formats and the site's rules read them ----------------------


def parse_date(text: Any) -> date | None:
    """A calendar date ``YYYY-MM-DD``; also the date of a date-time written
    where a date belongs (issuers did), if the whole of it is readable."""
    if not isinstance(text, str) or not _FULL_DATE_RE.fullmatch(text[:10]):
        return None
    if len(text) > 10 and (text[10] != "T" or parse_datetime(text) is None):
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def parse_datetime(text: Any) -> datetime | None:
    """An ISO 8601 date and time, aware (UTC when no offset is written)."""
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _format_checker() -> jsonschema.FormatChecker:
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date")
    def is_date(instance: object) -> bool:
        return not isinstance(instance, str) or parse_date(instance) is not None

    @checker.checks("date-time")
    def is_datetime(instance: object) -> bool:
        return not isinstance(instance, str) or parse_datetime(instance) is not None

    return checker


# --- the schemas -----------------------------------------------------------------


@functools.cache
def released_versions() -> tuple[tuple[int, int, int], ...]:
    """The schema releases the package holds, oldest first."""
    found = []
    for entry in (dcc_valuesets.spec_files() / "schema").iterdir():
        match = _VERSION_RE.fullmatch(entry.name.removesuffix(".json"))
        if match and entry.name.endswith(".json"):
            found.append((int(match[1]), int(match[2]), int(match[3])))
    if not found:
        raise FileNotFoundError("no DCC schema in the package (kiosk/codes/dcc_spec/schema)")
    return tuple(sorted(found))


def schema_version_for(ver: Any) -> str:
    """The release a certificate declaring ``ver`` is checked against."""
    releases = released_versions()
    match = _VERSION_RE.fullmatch(ver) if isinstance(ver, str) else None
    if match is None:
        chosen = releases[-1]
    else:
        wanted = (int(match[1]), int(match[2]), int(match[3]))
        older = [release for release in releases if release <= wanted]
        chosen = older[-1] if older else releases[0]
    return ".".join(map(str, chosen))


def _value_set_keyword(
    validator: Validator, uri: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    """``valueset-uri``: a string must be a code of the set the URI names,
    when that set binds (:func:`kiosk.codes.dcc_valuesets.allows`)."""
    from jsonschema.exceptions import ValidationError

    if not isinstance(instance, str) or not isinstance(uri, str):
        return
    name = dcc_valuesets.value_set_name(uri)
    if name is not None and not dcc_valuesets.allows(name, instance):
        yield ValidationError(f"not in the value set {name}")


@functools.cache
def _validator_class(value_sets: bool) -> Any:
    import jsonschema

    if not value_sets:
        return jsonschema.Draft202012Validator
    return jsonschema.validators.extend(
        jsonschema.Draft202012Validator, validators={"valueset-uri": _value_set_keyword}
    )


@functools.cache
def validator_for(version: str, *, value_sets: bool = True) -> Validator:
    """The compiled validator of one packaged release (cached per process)."""
    path = dcc_valuesets.spec_files() / "schema" / f"{version}.json"
    schema = inline_refs(_as_verifiers_read_it(json.loads(path.read_text(encoding="utf-8"))))
    return _validator_class(value_sets)(schema, format_checker=_format_checker())


def _as_verifiers_read_it(schema: dict[str, Any]) -> dict[str, Any]:
    """Two changes the later releases made, applied to the earlier ones:

    - the country's value set (``co``), unnamed before 1.3.0;
    - texts limited to 50 characters before 1.3.0 may hold 80: issuers wrote
      longer names of test centres and issuers, and the EU's reference
      verifier apps raised the limit (dgca-app-core-android#32,
      dgca-app-core-ios#59) before the schema did.
    """
    country = schema.get("$defs", {}).get("country_vt")
    if isinstance(country, dict):
        country.setdefault("valueset-uri", f"valuesets/{dcc_valuesets.COUNTRIES}.json")

    def relax(node: Any) -> Any:
        if isinstance(node, list):
            return [relax(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: relax(value) for key, value in node.items()}
        if node.get("maxLength") == _OLD_MAX_LENGTH:
            node["maxLength"] = _MAX_LENGTH
        return node

    relaxed: dict[str, Any] = relax(schema)
    return relaxed


_OLD_MAX_LENGTH = 50
_MAX_LENGTH = 80


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each ``{"$ref": "#/$defs/name"}`` replaced by the
    definition it points to: the same rules, checked about twice as fast
    (jsonschema looks a reference up on every use). Keywords beside a
    reference that are only annotations (description, title) are merged
    in; any other keyword keeps both, under ``allOf``, as 2020-12 reads
    them. References of another form stay as they are."""
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: resolve(value) for key, value in node.items() if key != "$defs"}
        ref = node.get("$ref")
        name = ref.removeprefix("#/$defs/") if isinstance(ref, str) else None
        if name is None or name == ref or name not in definitions:
            return node
        target = resolve(definitions[name])
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        if set(siblings) <= _ANNOTATIONS:
            return {**target, **siblings}
        return {**siblings, "allOf": [*siblings.get("allOf", []), target]}

    inlined: dict[str, Any] = resolve(schema)
    if "$ref" not in json.dumps(inlined):
        return inlined
    return {**inlined, "$defs": definitions}  # what is left still resolves


_ANNOTATIONS = frozenset({"description", "title", "$comment", "examples"})


def schema_problem(dcc: Mapping[str, Any], *, value_sets: bool = True) -> str | None:
    """Why ``dcc`` does not follow the official schema of its version (with
    the value sets unless ``value_sets`` is False) or holds other than exactly
    one of v, t, r; None when it does. A short English line for the log."""
    version = schema_version_for(dcc.get("ver"))
    validator = validator_for(version, value_sets=value_sets)
    first = next(validator.iter_errors(dcc), None)
    if first is not None:
        from jsonschema.exceptions import best_match

        error = best_match(validator.iter_errors(dcc)) or first
        return f"{_describe(error)} (schema {version})"
    present = [key for key in CERTIFICATE_TYPES if key in dcc]
    if len(present) != 1:
        return "no vaccination, test or recovery" if not present else "more than one of v, t, r"
    if value_sets and present == ["t"]:
        for index, entry in enumerate(dcc["t"]):
            device = entry.get("ma")
            rapid = entry["tt"] == dcc_valuesets.TEST_TYPE_RAT
            if rapid and device and device not in dcc_valuesets.RAT_DEVICES:
                return f"t[{index}].ma is not a device of the EU list of rapid tests"
    return None


def _describe(error: ValidationError) -> str:
    where = "".join(
        f"[{step}]" if isinstance(step, int) else f".{step}" for step in error.absolute_path
    ).lstrip(".")
    keyword = str(error.validator)
    if keyword == "required":
        # The message names a property of the schema, not a value of the certificate.
        missing = error.message.split("'")[1] if error.message.count("'") >= 2 else "a field"
        return f"{where + ': ' if where else ''}{missing} is missing"
    why = _WHY.get(keyword, f"breaks the rule {keyword}").format(value=error.validator_value)
    return f"{where or 'the certificate'} {why}"
