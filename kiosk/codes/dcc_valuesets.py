"""The EU DCC value sets the gate holds certificates to.

The DCC JSON schema leaves coded fields as strings and names, with a
``valueset-uri`` annotation, the value set each should come from. The EU
publishes those sets (ehn-dcc-development/eu-dcc-valuesets, Apache License
2.0), but the schema does not bind a certificate to them, and the public
test suite holds valid certificates whose disease, vaccine, test type or
test result is a national code or text outside the sets (ES "729999" and
"NEGATIVO", HU "COVID-19 Vaccine Moderna", IE "COVID-19 test"). The sets
the suite holds binding, in every schema version, bind at the gate too:

- the country of vaccination, test or recovery (``co``): ISO 3166-1 alpha-2
  and XK;
- the device of a rapid antigen test (``t[].ma`` when ``tt`` is
  :data:`TEST_TYPE_RAT`): the EU common list of release date 2021-06-30,
  kept here in :data:`RAT_DEVICES` (later releases of the value sets no
  longer carry it: the JRC's database does).

The vaccine's marketing authorisation holder or maker (``v[].ma``) is not
bound. The suite is not of one mind: PL's cases refuse a made-up maker,
while SM's (a mistyped "ORG-1000030215"), GE's ("SinovacBiotech") and ES's
("729999") expect a maker outside the set to pass. The gate's decision never
uses the maker, the signature already proves the issuing country wrote it,
and a visitor with a valid certificate must not be turned away for a
country's typo or for a maker added after this snapshot; so the gate follows
the official schema, which does not bind it.

The first come from release 2.12.0 of the value sets, packaged in
``dcc_spec/valuesets/`` with its LICENSE and COMMIT; every code listed
counts, active or not (a certificate issued while a code was active stays
readable). What the gate's own rules need of the rest they check
themselves: the disease must be COVID-19, a test result "not detected"
(:func:`kiosk.codes.hcert.rules_problem`).

A snapshot ages: a certificate naming a maker or a device added after it
is refused with ``hcert-bad-schema``. ``hcert.check_value_sets = false``
turns these checks off (the schema's own checks stay).
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from importlib.resources.abc import Traversable

DISEASE_COVID19 = "840539006"

TEST_RESULT_NOT_DETECTED = "260415000"
TEST_RESULT_DETECTED = "260373001"

TEST_TYPE_NAAT = "LP6464-4"
TEST_TYPE_RAT = "LP217198-3"

COUNTRIES = "country-2-codes"
VACCINE_MAKERS = "vaccine-mah-manf"
BINDING = frozenset({COUNTRIES})
"""The sets a schema's ``valueset-uri`` binds a field to."""

# "covid-19-lab-test-manufacturer-and-name" (the EU common list of rapid
# antigen tests, by JRC device id), value set date 2021-06-30.
_RAT_DEVICE_IDS = """
    1833 1232 1468 2108 2130 1304 1822 1815 1736 768 1654 2010 2101 1906 1065 1870 1331 1484 1242
    1223 1236 1173 1919 1225 1375 1244 1253 2183 1144 1747 1360 1437 1257 1363 1365 1844 1215
    2139 1392 1767 1263 1333 1764 1266 2128 1267 1268 1180 2029 1190 1481 2104 1162 1420 1501 1199
    308 2116 1271 1341 1097 1606 1604 1489 1490 1201 344 345 1319 2109 2017 1769 1574 1218 1114
    1466 1934 2074 1443 2103 2098 1763 1278 1456 1884 1296 1295 1343
"""
RAT_DEVICES = frozenset(_RAT_DEVICE_IDS.split())

_URI_NAME_RE = re.compile(r"(?:.*/)?([a-z0-9-]+)\.json")


def spec_files() -> Traversable:
    """The packaged specification data (``schema/``, ``valuesets/``)."""
    return resources.files("kiosk.codes") / "dcc_spec"


def value_set_name(uri: str) -> str | None:
    """The value set a schema's ``valueset-uri`` names
    (``valuesets/country-2-codes.json`` -> ``country-2-codes``), or None."""
    match = _URI_NAME_RE.fullmatch(uri)
    return match.group(1) if match else None


def allows(name: str, code: str) -> bool:
    """Whether ``code`` may stand in a field the schema annotates with the
    value set ``name``: always when that set does not bind (see the module
    docstring); else when the set lists it, active or not (a certificate
    issued while a code was active stays readable)."""
    return name not in BINDING or code in value_set(name)


@functools.cache
def value_set(name: str) -> frozenset[str]:
    """Every code of a packaged value set, read from the package once per
    process; FileNotFoundError when the package does not hold it."""
    path = spec_files() / "valuesets" / f"{name}.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    return frozenset(document["valueSetValues"])
