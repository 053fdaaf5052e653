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
from kiosk.config_settings import EDITABLE_ON_WEB, SETTINGS, Setting
from kiosk.errors import ConfigError
from kiosk.web_checks import web_problems

ENV_PREFIX = "GATEKIOSK_"


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
    def province_key_path(self) -> Path | None:
        """The province-wide subject-hash key (``privacy.province_key_file``),
        relative to the data folder; None when the setting is off (empty)."""
        configured = str(self.values.get("privacy.province_key_file", "")).strip()
        return self.data_dir / configured if configured else None

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
    return with_values(settings, changes)


def with_values(settings: Settings, values: Mapping[str, Any]) -> Settings:
    """``settings`` with ``values`` over them, checked again; the same source
    file and database name. ConfigError if a value is not valid."""
    merged = load_settings(overrides={**settings.values, **values}, env={})
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
