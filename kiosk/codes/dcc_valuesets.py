"""The few EU DCC value sets the gate checks, as a fixed snapshot.

The DCC JSON schema leaves most coded fields as free strings and points to
value sets the EU publishes (ehn-dcc-development/eu-dcc-valuesets, Apache
License 2.0). The gate is offline, so it carries the ones whose violation the
public test suite treats as a schema failure: the country (ISO 3166-1
alpha-2, plus XK), the vaccine's marketing authorisation holder, the rapid
antigen test device, the disease (COVID-19 only), the test type and result.

A snapshot ages: a certificate naming a device or a manufacturer added after
it is refused with ``hcert-bad-schema``. ``hcert.check_value_sets = false``
turns these checks off (the structural checks stay).
"""

from __future__ import annotations


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DISEASE_COVID19 = "840539006"

TEST_RESULT_NOT_DETECTED = "260415000"
TEST_RESULT_DETECTED = "260373001"
TEST_RESULTS = frozenset({TEST_RESULT_NOT_DETECTED, TEST_RESULT_DETECTED})

TEST_TYPE_NAAT = "LP6464-4"
TEST_TYPE_RAT = "LP217198-3"
TEST_TYPES = frozenset({TEST_TYPE_NAAT, TEST_TYPE_RAT})

# ISO 3166-1 alpha-2, and XK (Kosovo), as the value set "country-2-codes".
COUNTRIES = _words(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR
    BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ
    EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW
    GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY
    KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV
    MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY
    QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG
    TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA
    ZM ZW
    """
)

# "vaccines-covid-19-auth-holders", value set date 2022-01-26.
VACCINE_MAH = _words(
    """
    ORG-100001699 ORG-100030215 ORG-100001417 ORG-100031184 ORG-100006270 ORG-100013793
    ORG-100020693 ORG-100010771 ORG-100024420 ORG-100032020 Gamaleya-Research-Institute
    Vector-Institute Sinovac-Biotech Bharat-Biotech ORG-100001981 Fiocruz ORG-100007893
    Chumakov-Federal-Scientific-Center ORG-100023050 CIGB Sinopharm-WIBP ORG-100033914
    ORG-100000788 ORG-100036422 Instituto-Butantan NVSI Yisheng-Biopharma ORG-100026614
    ORG-100008549 Finlay-Institute
    """
)

# "covid-19-lab-test-manufacturer-and-name" (the EU common list of rapid
# antigen tests, by JRC device id), value set date 2021-06-30.
RAT_DEVICES = _words(
    """
    1833 1232 1468 2108 2130 1304 1822 1815 1736 768 1654 2010 2101 1906 1065 1870 1331 1484 1242
    1223 1236 1173 1919 1225 1375 1244 1253 2183 1144 1747 1360 1437 1257 1363 1365 1844 1215
    2139 1392 1767 1263 1333 1764 1266 2128 1267 1268 1180 2029 1190 1481 2104 1162 1420 1501 1199
    308 2116 1271 1341 1097 1606 1604 1489 1490 1201 344 345 1319 2109 2017 1769 1574 1218 1114
    1466 1934 2074 1443 2103 2098 1763 1278 1456 1884 1296 1295 1343
    """
)
