"""What every request needs: the store, the clock, the site's effective settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import current_app

from kiosk.accounts import PasswordHashing
from kiosk.clock import Clock
from kiosk.config import Settings, with_site_settings
from kiosk.errors import ConfigError
from kiosk.store import Store


@dataclass(frozen=True)
class WebContext:
    settings: Settings
    """The settings file's values; see :meth:`effective` for what is in force."""
    store: Store
    clock: Clock
    hash_key: bytes
    password_hashing: PasswordHashing

    def effective(self) -> Settings:
        """The file's settings with the managers' web changes applied."""
        try:
            return with_site_settings(self.settings, self.store.site_settings())
        except ConfigError:
            return self.settings

    @property
    def tz(self) -> ZoneInfo:
        return self.effective().timezone

    def local_day(self, day: datetime | None = None) -> tuple[datetime, datetime]:
        """The local calendar day around ``day`` (default now) as aware UTC bounds."""
        tz = self.tz
        local = (day or self.clock.now()).astimezone(tz)
        start = datetime.combine(local.date(), time(0), tzinfo=tz)
        end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=tz)
        return start, end


def gk() -> WebContext:
    context: WebContext = current_app.extensions["gatekiosk"]
    return context
