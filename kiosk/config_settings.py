"""Every setting of gatekiosk, declared once as data: its section, key,
default, one line of help and its limits (read and checked by
:mod:`kiosk.config`; ``deploy/gatekiosk.toml`` is generated from them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kiosk.web_checks import DISPLAY_TOKEN_MIN_CHARS


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    """True when the setting may be empty (None); ``default`` then fixes the type."""

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def kind(self) -> type:
        return type(self.default) if self.default is not None else str


def _int_or_none(section: str, key: str, default: int | None, help: str) -> Setting:
    return Setting(section, key, default, help, minimum=0, maximum=99999, optional=True)


SETTINGS: tuple[Setting, ...] = (
    Setting("gate", "id", "gate-1", "Name of this gate, recorded with every event."),
    Setting(
        "gate",
        "mode",
        "both",
        "entry: everyone comes in; exit: everyone goes out; both: direction from presence.",
        choices=("entry", "exit", "both"),
    ),
    Setting("gate", "timezone", "Asia/Ho_Chi_Minh", "The site's IANA time zone."),
    Setting(
        "gate",
        "site_id",
        "site-1",
        "The site's id inside its signed declarations and passes: every gate of one "
        "site accepts the codes the site issued (letters, digits, '.', '_', '-').",
    ),
    Setting(
        "gate",
        "site_name",
        "",
        "The site's name on the declaration page, the poster and staff badges.",
    ),
    Setting("gate", "data_dir", "gatekiosk-data", "Folder for the database and the hash key."),
    Setting(
        "camera",
        "source",
        "v4l2",
        "picamera2 (Pi Camera Module), v4l2 (USB webcam), file (video or image folder), "
        "synthetic (rendered demo codes).",
        choices=("picamera2", "v4l2", "file", "synthetic"),
    ),
    Setting(
        "camera",
        "device",
        "0",
        "v4l2: index or /dev/v4l/by-id/... path; file: video file or image folder.",
    ),
    Setting("camera", "width", 640, "Frame width in pixels.", minimum=160, maximum=4096),
    Setting("camera", "height", 480, "Frame height in pixels.", minimum=120, maximum=3072),
    Setting(
        "camera", "fps", 15.0, "Frames per second asked of the camera.", minimum=1, maximum=120
    ),
    Setting(
        "camera",
        "stall_timeout_s",
        1.0,
        "A camera silent this long (at least 3 frame intervals) shows the fault and is reopened.",
        minimum=0.2,
        maximum=60,
    ),
    Setting(
        "camera",
        "focus",
        "auto-macro",
        "Pi camera focus: auto-macro (continuous autofocus in the macro range, for codes "
        "held 5-30 cm away), fixed (the lens held at focus_cm), none (left to the camera). "
        "Applied only where the camera has those controls (Camera Module 3).",
        choices=("auto-macro", "fixed", "none"),
    ),
    Setting(
        "camera",
        "focus_cm",
        10.0,
        "With focus = fixed: distance in cm from the lens to the held code.",
        minimum=2,
        maximum=1000,
    ),
    Setting(
        "camera",
        "fault_exit_s",
        60.0,
        "After this many seconds of continuous camera fault the kiosk exits with an error, "
        "so that systemd restarts it (a hung camera driver is freed only with the process); "
        "0: never.",
        minimum=0,
        maximum=3600,
    ),
    Setting(
        "decoder",
        "backend",
        "pipeline",
        "QR decoder: pipeline (zxing-cpp plus cheap retries), zxing or zbar (libzbar).",
        choices=("pipeline", "zxing", "zbar"),
    ),
    Setting(
        "scan",
        "hysteresis_s",
        2.0,
        "A code must leave view this long before showing it again counts as a new scan.",
        minimum=0.1,
        maximum=60,
    ),
    Setting(
        "policy",
        "antipassback",
        "soft",
        "A code already inside used to enter again: off, soft (allow, warn), hard (deny).",
        choices=("off", "soft", "hard"),
    ),
    Setting(
        "policy",
        "presence_expiry_h",
        12.0,
        "Hours after which someone with no recorded exit no longer counts as inside.",
        minimum=0.1,
        maximum=24 * 14,
    ),
    Setting(
        "policy",
        "capacity",
        0,
        "Most people inside at once; 0 for no limit.",
        minimum=0,
        maximum=1_000_000,
    ),
    Setting(
        "policy",
        "allowed_kinds",
        "declaration,staff-pass,cccd,pc-covid,hcert",
        "Comma-separated code kinds the gate accepts.",
    ),
    Setting(
        "codes",
        "skew_s",
        300.0,
        "Clock difference tolerated when checking a signed code's validity, in seconds.",
        minimum=0,
        maximum=3600,
    ),
    Setting(
        "codes",
        "declaration_validity_h",
        24.0,
        "How long a health declaration is valid after it is made, in hours.",
        minimum=1,
        maximum=24 * 14,
    ),
    Setting(
        "codes",
        "declarations_per_hour",
        10,
        "Declarations one address may make per hour on the public page.",
        minimum=1,
        maximum=10000,
    ),
    Setting(
        "hcert",
        "vaccination_min_days",
        14,
        "EU/Vietnam COVID certificates: days after the last dose of a complete "
        "vaccination before it is accepted.",
        minimum=0,
        maximum=365,
    ),
    Setting(
        "hcert",
        "test_max_hours",
        48.0,
        "EU/Vietnam COVID certificates: the most hours since a negative test's sample.",
        minimum=1,
        maximum=24 * 14,
    ),
    Setting(
        "hcert",
        "check_value_sets",
        True,
        "Refuse COVID certificates whose country, vaccine maker or rapid test is not in "
        "the EU value sets the gate carries (a 2021-2022 snapshot).",
    ),
    Setting(
        "pins",
        "backend",
        "auto",
        "auto (lgpio on a Raspberry Pi, simulated elsewhere), lgpio, or mock.",
        choices=("auto", "lgpio", "mock"),
    ),
    _int_or_none("pins", "green", 17, "BCM pin of the green light."),
    _int_or_none("pins", "red", 27, "BCM pin of the red light."),
    _int_or_none("pins", "buzzer", 22, "BCM pin of the buzzer (empty: none)."),
    _int_or_none("pins", "relay", 23, "BCM pin of the door relay."),
    _int_or_none("pins", "button", 24, "BCM pin of the guard's override button (empty: none)."),
    _int_or_none("pins", "status", 25, "BCM pin of the ready/fault light (empty: none)."),
    Setting(
        "pins",
        "relay_active_high",
        False,
        "True if the relay module switches on a high input; most cheap modules are active-low.",
    ),
    Setting(
        "pins",
        "relay_pulse_ms",
        1500,
        "How long the door relay stays energised.",
        minimum=50,
        maximum=30000,
    ),
    Setting(
        "pins",
        "light_ms",
        1500,
        "How long the green or red light stays on.",
        minimum=100,
        maximum=30000,
    ),
    Setting(
        "privacy",
        "store_full_id",
        False,
        "Keep full ID numbers in the log (otherwise only masked IDs and keyed hashes).",
    ),
    Setting(
        "privacy",
        "retention_days",
        21,
        "Events older than this are purged.",
        minimum=1,
        maximum=3650,
    ),
    # Issue 18, helper D: the province-wide subject hash (off by default).
    Setting(
        "privacy",
        "province_key_file",
        "",
        "Empty (the default): off, and the province cannot follow one person across sites. "
        "Set it only where the law requires the province to do so: the key file the province "
        "makes with `gatekiosk province key` and gives every gate of the province out of band "
        "(the same file everywhere, mode 0600; a "
        "relative path is inside gate.data_dir). The gate then also hashes each person with it "
        "and that hash goes up to the province; the ID itself never leaves the gate.",
    ),
)

WEB_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "web",
        "host",
        "127.0.0.1",
        "Address the admin web listens on; 0.0.0.0 or the Pi's LAN address to reach it "
        "from other machines.",
    ),
    Setting("web", "port", 8080, "Port of the admin web.", minimum=1, maximum=65535),
    Setting(
        "web",
        "display_token",
        "",
        "Secret that lets a screen on another machine open /display without logging in "
        f"(/display?token=...), at least {DISPLAY_TOKEN_MIN_CHARS} characters; empty: only "
        "this machine's own screen may.",
    ),
    Setting(
        "web",
        "cookie_secure",
        False,
        "Send the session cookie over HTTPS only (turn on behind a TLS proxy).",
    ),
    Setting(
        "web",
        "trusted_proxy",
        "",
        "IP address the reverse proxy in front of the admin web connects from, exactly "
        "(127.0.0.1 for Caddy or nginx on the Pi); its X-Forwarded-For and "
        "X-Forwarded-Proto are believed, and it must send X-Forwarded-For. Empty: no proxy "
        "is trusted, and a request that carries forwarding headers is never taken for "
        "this machine's own screen.",
    ),
    Setting(
        "web",
        "trusted_proxy_count",
        1,
        "How many trusted proxies are chained in front of the admin web.",
        minimum=1,
        maximum=5,
    ),
    Setting(
        "web",
        "allowed_hosts",
        "",
        "Comma-separated host names the admin web answers to, besides IP addresses, "
        "localhost, this machine's name (and name.local) and web.host; a request for "
        "any other name is refused (against DNS rebinding).",
    ),
    Setting(
        "web",
        "threads",
        8,
        "Worker threads answering requests (the dashboard and the gate screen poll "
        "twice a second each).",
        minimum=2,
        maximum=64,
    ),
    Setting(
        "web",
        "connection_limit",
        500,
        "Most connections open at once; idle ones count too. Keep it well below the "
        "process's open-file limit (ulimit -n, 1024 by default).",
        minimum=20,
        maximum=10000,
    ),
    Setting(
        "web",
        "channel_timeout_s",
        30,
        "Seconds after which a connection that sends nothing is closed (checked every "
        "few seconds), so idle or half-sent requests cannot hold connections.",
        minimum=5,
        maximum=600,
    ),
)
SETTINGS = SETTINGS + WEB_SETTINGS

SITE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "site",
        "hub",
        "",
        "The site's hub, host:port of its MQTT broker (TLS), for example hub.local:8883; "
        "empty: this gate is on its own (no broker, no upload).",
    ),
    Setting(
        "site",
        "dir",
        "",
        "Folder of the site's files (CA, this machine's certificate and key, the hub's "
        "public keys, the site's hash key); empty: <data_dir>/site.",
    ),
)
SETTINGS = SETTINGS + SITE_SETTINGS

ENROLMENT_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "site",
        "enrol_port",
        8443,
        "Hub only: HTTPS port where gates join the site with a one-time token.",
        minimum=1,
        maximum=65535,
    ),
)
SETTINGS = SETTINGS + ENROLMENT_SETTINGS

SITE_PRESENCE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "site",
        "stale_after_s",
        30.0,
        "A gate of a site that has not heard every gate of it for this many seconds decides "
        "on a stale site view (its events are flagged).",
        minimum=1,
        maximum=3600,
    ),
    Setting(
        "site",
        "antipassback_when_stale",
        "soft",
        "Anti-passback on a stale site view: local (what this gate knows), soft (allow, "
        "warn), deny (refuse entries).",
        choices=("local", "soft", "deny"),
    ),
    Setting(
        "site",
        "entry_gates",
        1,
        "How many gates of the site admit entries: on a stale site view each admits at most "
        "its share of the capacity left.",
        minimum=1,
        maximum=1000,
    ),
)
SETTINGS = SETTINGS + SITE_PRESENCE_SETTINGS

PROVINCE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "uplink",
        "host",
        "",
        "Hub only: the province's PostgreSQL server (name or address) that "
        "`gatekiosk uplink` sends this site's events to; empty (and no uplink.dsn): no uplink.",
    ),
    Setting(
        "uplink", "port", 5432, "Hub only: the province server's port.", minimum=1, maximum=65535
    ),
    Setting("uplink", "dbname", "province", "Hub only: the province's database."),
    Setting(
        "uplink",
        "role",
        "",
        "Hub only: this site's login at the province (made by `gatekiosk province add-site`, "
        "site_<id> by default).",
    ),
    Setting(
        "uplink",
        "ca_file",
        "",
        "Hub only: the province server's CA certificate (PEM); the connection is TLS with "
        "the server's name checked (sslmode=verify-full). Required unless the server is this "
        "machine or uplink.allow_plaintext is true.",
    ),
    Setting(
        "uplink",
        "cert_file",
        "",
        "Hub only: this site's client certificate (PEM), when the province authenticates "
        "sites by certificate; needs uplink.key_file.",
    ),
    Setting("uplink", "key_file", "", "Hub only: the private key of uplink.cert_file (mode 0600)."),
    Setting(
        "uplink",
        "password_file",
        "",
        "Hub only: a file holding the site login's password (first line; readable by the "
        "service only), read at start and never logged; empty: none (certificate, ~/.pgpass).",
    ),
    Setting(
        "uplink",
        "allow_plaintext",
        False,
        "Hub only: allow a connection without verified TLS (no uplink.ca_file) to a server "
        "other than this machine, e.g. over a private link you trust.",
    ),
    Setting(
        "uplink",
        "dsn",
        "",
        "Hub only, for experts: a libpq connection string (e.g. 'host=... sslmode=verify-full "
        "sslrootcert=...'); the uplink.* settings above that are set override its parts "
        "(port and dbname only beside uplink.host).",
    ),
    Setting(
        "uplink",
        "batch",
        5000,
        "Hub only: events per batch sent to the province (one transaction each).",
        minimum=1,
        maximum=100000,
    ),
)
SETTINGS = SETTINGS + PROVINCE_SETTINGS

EDITABLE_ON_WEB: tuple[str, ...] = (
    "gate.id",
    "gate.site_name",
    "codes.declaration_validity_h",
    "gate.mode",
    "gate.timezone",
    "policy.capacity",
    "policy.antipassback",
    "policy.allowed_kinds",
    "policy.presence_expiry_h",
    "scan.hysteresis_s",
    "pins.relay_pulse_ms",
    "privacy.retention_days",
)
"""Settings a manager may change on the web; they are stored in the database
and override the file. Pins, camera and paths stay in the file: they need
someone at the machine anyway."""

# --- province web (issue 18, helper A): gatekiosk province web
PROVINCE_WEB_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "province_web",
        "dsn",
        "",
        "Province server only (gatekiosk province web): the province's PostgreSQL as a libpq "
        "connection string of a login in province_reader, for example 'host=localhost "
        "dbname=province user=province_web' (password in ~/.pgpass). Times are shown in "
        "gate.timezone; the web's accounts live in gate.data_dir.",
    ),
    Setting(
        "province_web",
        "export_max_days",
        31,
        "Province web: the longest window of one site's entries one export may cover, in days.",
        minimum=1,
        maximum=366,
    ),
)
SETTINGS = SETTINGS + PROVINCE_WEB_SETTINGS
