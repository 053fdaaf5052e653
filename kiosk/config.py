"""Settings: every one declared once, as data, with its default and a line of help.

A site's settings come from one TOML file (see ``deploy/gatekiosk.toml``),
then from environment variables named ``GATEKIOSK_<SECTION>__<KEY>`` (for
example ``GATEKIOSK_GATE__MODE=exit``). Unknown keys, wrong types and values
out of range all fail at start-up, in one message that lists every problem.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gate_controller.pins import PinConfig
from kiosk.errors import ConfigError
from kiosk.web_checks import DISPLAY_TOKEN_MIN_CHARS, web_problems

ENV_PREFIX = "GATEKIOSK_"


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
        "province",
        "dsn",
        "",
        "Hub only: the province's PostgreSQL as a libpq connection string, for example "
        "'host=province.example dbname=province user=site_market_3 sslmode=verify-full "
        "sslrootcert=/etc/gatekiosk/province-ca.pem' (password in ~/.pgpass); "
        "empty: no uplink.",
    ),
    Setting(
        "province",
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

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Validated settings, by name: ``settings["gate.mode"]``."""

    values: Mapping[str, Any]
    source: Path | None = None
    db_name: str = "gatekiosk.db"

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def data_dir(self) -> Path:
        return Path(self.values["gate.data_dir"])

    @property
    def keys_dir(self) -> Path:
        """The site's signing keys: private ones only readable by the service user."""
        return self.data_dir / "keys"

    @property
    def site_dir(self) -> Path:
        """The site's files (see ``site.dir``)."""
        configured = str(self.values.get("site.dir", ""))
        return Path(configured) if configured else self.data_dir / "site"

    @property
    def in_site(self) -> bool:
        """Whether this machine belongs to a site (``site.hub`` is set)."""
        return bool(str(self.values.get("site.hub", "")).strip())

    @property
    def db_path(self) -> Path:
        return self.data_dir / self.db_name

    @property
    def key_path(self) -> Path:
        return self.data_dir / "subject.key"

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.values["gate.timezone"])

    @property
    def allowed_kinds(self) -> frozenset[str]:
        raw = str(self.values["policy.allowed_kinds"])
        return frozenset(k.strip() for k in raw.split(",") if k.strip())

    def pin_config(self) -> PinConfig:
        v = self.values
        return PinConfig(
            green=v["pins.green"],
            red=v["pins.red"],
            buzzer=v["pins.buzzer"],
            relay=v["pins.relay"],
            button=v["pins.button"],
            status=v["pins.status"],
            relay_active_high=v["pins.relay_active_high"],
            relay_pulse_ms=v["pins.relay_pulse_ms"],
            light_ms=v["pins.light_ms"],
        )


def _coerce(setting: Setting, value: Any) -> tuple[Any, str | None]:
    """Value converted to the setting's type, or a problem message."""
    if value is None or (setting.optional and value in ("", "none", "None")):
        if setting.optional:
            return None, None
        return None, f"{setting.name}: a value is required"
    kind = setting.kind
    try:
        if kind is bool:
            if isinstance(value, bool):
                converted: Any = value
            elif isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                converted = True
            elif isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                converted = False
            else:
                return None, f"{setting.name}: expected true or false, got {value!r}"
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                return None, f"{setting.name}: expected a whole number, got {value!r}"
            converted = int(value)
        elif kind is float:
            if isinstance(value, bool):
                return None, f"{setting.name}: expected a number, got {value!r}"
            converted = float(value)
        else:
            if not isinstance(value, str | int):
                return None, f"{setting.name}: expected text, got {value!r}"
            converted = str(value)
    except (TypeError, ValueError):
        return None, f"{setting.name}: expected a {kind.__name__}, got {value!r}"
    if setting.choices and converted not in setting.choices:
        return None, f"{setting.name}: {converted!r} is not one of {', '.join(setting.choices)}"
    if isinstance(converted, int | float) and not isinstance(converted, bool):
        if setting.minimum is not None and converted < setting.minimum:
            return None, f"{setting.name}: {converted} is below the minimum {setting.minimum:g}"
        if setting.maximum is not None and converted > setting.maximum:
            return None, f"{setting.name}: {converted} is above the maximum {setting.maximum:g}"
    return converted, None


def _flatten(document: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, table in document.items():
        if not isinstance(table, Mapping):
            problems.append(f"{section}: expected a [{section}] table, got a single value")
            continue
        for key, value in table.items():
            flat[f"{section}.{key}"] = value
    return flat


def _from_env(env: Mapping[str, str]) -> dict[str, str]:
    found = {}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
            found[f"{section}.{key}"] = value
    return found


def load_settings(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Defaults, then the TOML file, then the environment, then ``overrides``.

    Raises :class:`ConfigError` listing every problem found.
    """
    problems: list[str] = []
    given: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{path}: no such file"]) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: cannot read it ({exc})"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML ({exc})"]) from None
        given.update(_flatten(document, problems))
    given.update(_from_env(os.environ if env is None else env))
    given.update(overrides or {})

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in given:
            value, problem = _coerce(setting, given[setting.name])
            if problem:
                problems.append(problem)
                continue
            values[setting.name] = value
        else:
            values[setting.name] = setting.default
    for name in sorted(set(given) - set(_BY_NAME)):
        problems.append(f"{name}: unknown setting")

    problems.extend(_cross_checks(values))
    if problems:
        raise ConfigError(problems)
    return Settings(values=values, source=path)


def with_site_settings(settings: Settings, site: Mapping[str, Any]) -> Settings:
    """The file's settings with a manager's web changes applied over them.

    Only :data:`EDITABLE_ON_WEB` names are taken; a stored value that is no
    longer valid (a setting's range changed in an upgrade) raises ConfigError.
    """
    changes = {k: v for k, v in site.items() if k in EDITABLE_ON_WEB}
    if not changes:
        return settings
    merged = load_settings(overrides={**settings.values, **changes}, env={})
    return Settings(values=merged.values, source=settings.source, db_name=settings.db_name)


def _cross_checks(values: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if "gate.timezone" in values:
        try:
            ZoneInfo(values["gate.timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"gate.timezone: unknown time zone {values['gate.timezone']!r}")
    if not str(values.get("gate.id", "")).strip():
        problems.append("gate.id: must not be empty")
    if "gate.site_id" in values and not re.fullmatch(
        r"[A-Za-z0-9._-]{1,32}", str(values["gate.site_id"])
    ):
        problems.append("gate.site_id: 1 to 32 letters, digits, '.', '_' or '-'")
    problems.extend(web_problems(values))
    kinds = {k.strip() for k in str(values.get("policy.allowed_kinds", "")).split(",")}
    known = {"declaration", "staff-pass", "cccd", "pc-covid", "hcert"}
    for kind in sorted(kinds - known - {""}):
        problems.append(
            f"policy.allowed_kinds: unknown kind {kind!r} (known: {', '.join(sorted(known))})"
        )
    problems.extend(_camera_checks(values))
    hub = str(values.get("site.hub", "")).strip()
    if hub and not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}", hub):
        problems.append("site.hub: host:port of the hub's broker, for example hub.local:8883")
    pin_fields: tuple[str, ...] = ("green", "red", "buzzer", "relay", "button", "status")
    pin_fields += ("relay_active_high", "relay_pulse_ms", "light_ms")
    if all(f"pins.{p}" in values for p in pin_fields):
        pins = Settings(values=values).pin_config()
        problems.extend(f"pins: {p}" for p in pins.validate())
    return problems


FAULT_EXIT_MIN_S = 10.0
"""The shortest ``camera.fault_exit_s`` (other than 0): a camera is given
several reopening attempts (2 s apart) before the process gives up on it."""


def _camera_checks(values: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if values.get("camera.focus") == "fixed" and values.get("camera.source") != "picamera2":
        problems.append(
            "camera.focus: 'fixed' needs camera.source = 'picamera2' (the lens of a USB "
            f"webcam is not driven); got camera.source = {values.get('camera.source')!r}"
        )
    exit_s = values.get("camera.fault_exit_s")
    stall_s = values.get("camera.stall_timeout_s")
    if exit_s and exit_s < FAULT_EXIT_MIN_S:
        problems.append(
            f"camera.fault_exit_s: {exit_s:g} is too short; 0 (never) or at least "
            f"{FAULT_EXIT_MIN_S:g} s, so that a camera is reopened a few times first"
        )
    elif exit_s and stall_s is not None and exit_s <= stall_s:
        problems.append(
            f"camera.fault_exit_s: {exit_s:g} must be longer than camera.stall_timeout_s "
            f"({stall_s:g})"
        )
    return problems


def example_toml() -> str:
    """The documented example configuration, generated from :data:`SETTINGS`."""
    lines = [
        "# gatekiosk configuration. Every setting is shown with its default;",
        "# delete what you do not change. Environment variables override this file:",
        "# GATEKIOSK_<SECTION>__<KEY>, for example GATEKIOSK_GATE__MODE=exit.",
    ]
    section = None
    for s in SETTINGS:
        if s.section != section:
            section = s.section
            lines += ["", f"[{section}]"]
        lines.append(f"# {s.help}")
        if s.choices:
            lines.append(f"# One of: {', '.join(s.choices)}.")
        if s.default is None:
            lines.append(f"# {s.key} =")
        elif isinstance(s.default, bool):
            lines.append(f"{s.key} = {'true' if s.default else 'false'}")
        elif isinstance(s.default, str):
            lines.append(f'{s.key} = "{s.default}"')
        else:
            lines.append(f"{s.key} = {s.default}")
    return "\n".join(lines) + "\n"
