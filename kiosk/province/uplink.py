"""``gatekiosk uplink``: a hub's events up to the province's PostgreSQL.

The site database is the queue (:class:`~kiosk.province.outbox.ProvinceOutbox`).
One batch at a time, in arrival order: COPY into a temporary table, then
``INSERT ... ON CONFLICT DO NOTHING`` into the partitioned ``province.events``,
COMMIT, and only then clear the marks at the hub. A crash anywhere in between
leaves the marks set, so the batch is sent again and the province ignores
what it already holds: nothing is lost, nothing doubled. The province's
row-level security refuses any row whose ``site_id`` is not the login's.

Example::

    uplink = Uplink(outbox, UplinkSettings(dsn="host=province.example dbname=province "
                    "user=site_market_3 sslmode=verify-full sslrootcert=/etc/gatekiosk/ca.pem",
                    zone=ZoneInfo("Asia/Ho_Chi_Minh")), clock=SystemClock())
    uplink.run()  # until uplink.stop()
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from kiosk.clock import Clock
from kiosk.province.assessment import AssessmentLink
from kiosk.province.errors import ProvinceError
from kiosk.province.outbox import PROVINCE_COLUMNS, ProvinceBatch, ProvinceOutbox
from kiosk.store.self_assessment import SelfAssessmentRepository

log = logging.getLogger(__name__)

DEFAULT_BATCH = 5000

_INCOMING_DDL = """
CREATE TEMP TABLE IF NOT EXISTS incoming (
    site_id text, id text, at_utc timestamptz, utc_offset_min integer, gate_id text,
    boot_id text, seq bigint, clock_synced boolean, direction text, decision text,
    reason text, kind text, subject_hash text, override boolean, warning text,
    province_subject_hash text
) ON COMMIT DELETE ROWS
"""
_COLUMNS = ("site_id", *PROVINCE_COLUMNS)


@dataclass(frozen=True)
class UplinkSettings:
    """Where and how a hub uploads.

    ``dsn`` is a libpq connection string (host, dbname, user, sslmode,
    sslrootcert...; a password in ``~/.pgpass`` or ``PGPASSFILE``).
    ``idle_s``: the wait, in seconds, when nothing is pending. Backoff after
    a failure doubles from ``backoff_min_s`` to ``backoff_max_s``.
    ``health_every_s``: how often the site's health is reported while busy.
    """

    dsn: str = field(repr=False)  # may hold the site login's password
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    batch_size: int = DEFAULT_BATCH
    idle_s: float = 5.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    health_every_s: float = 30.0
    connect_timeout_s: int = 10


@dataclass(frozen=True)
class BatchResult:
    """One batch committed at the province: how many were sent, how many were new."""

    sent: int
    inserted: int


@dataclass
class UplinkStats:
    """Running totals of this process, for logs and benchmarks."""

    sent: int = 0
    inserted: int = 0
    batches: int = 0
    failures: int = 0


Connector = Callable[[str, int], psycopg.Connection[tuple[object, ...]]]


def _connect(dsn: str, timeout_s: int) -> psycopg.Connection[tuple[object, ...]]:
    # Keepalives: a province server gone without a word (a cut line) is
    # noticed within about a minute, not after the kernel's two hours.
    return psycopg.connect(
        dsn,
        connect_timeout=timeout_s,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
        application_name="gatekiosk uplink",
    )


class Uplink:
    """The loop of ``gatekiosk uplink``: connect, drain, report health, wait; again."""

    def __init__(
        self,
        outbox: ProvinceOutbox,
        settings: UplinkSettings,
        *,
        clock: Clock,
        connect: Connector = _connect,
        on_tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._outbox = outbox
        self._settings = settings
        self._clock = clock
        self._connect = connect
        self._on_tick = on_tick
        self._stop = threading.Event()
        self.stats = UplinkStats()

    def stop(self) -> None:
        """End :meth:`run` after the batch in flight (safe from a signal handler)."""
        self._stop.set()

    def run(self) -> None:
        """Upload until stopped; a lost server is retried with backoff, never fatal."""
        self._outbox.enable(self._clock.now())
        backoff = self._settings.backoff_min_s
        while not self._stop.is_set():
            try:
                with self._connect(self._settings.dsn, self._settings.connect_timeout_s) as conn:
                    session = ProvinceSession(conn, self._outbox, self._settings.zone)
                    log.info("connected to the province as site %s", session.site_id)
                    backoff = self._settings.backoff_min_s
                    self._serve(session)
            except psycopg.Error as exc:
                self.stats.failures += 1
                log.warning("province: %s; retrying in %.0f s", str(exc).strip(), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._settings.backoff_max_s)

    def _serve(self, session: ProvinceSession) -> None:
        last_health: float | None = None
        while not self._stop.is_set():
            self._on_tick()
            result = session.send_batch(self._settings.batch_size)
            if result is not None:
                self.stats.sent += result.sent
                self.stats.inserted += result.inserted
                self.stats.batches += 1
            now_mono = self._clock.monotonic()
            idle = result is None
            if (
                idle
                or last_health is None
                or now_mono - last_health >= self._settings.health_every_s
            ):
                session.report_health(self._clock.now())
                last_health = now_mono
            if idle:
                self._stop.wait(self._settings.idle_s)

    def drain_once(self) -> UplinkStats:
        """Connect, send every pending event, report health, disconnect (tests, benchmarks)."""
        self._outbox.enable(self._clock.now())
        with self._connect(self._settings.dsn, self._settings.connect_timeout_s) as conn:
            session = ProvinceSession(conn, self._outbox, self._settings.zone)
            while (result := session.send_batch(self._settings.batch_size)) is not None:
                self.stats.sent += result.sent
                self.stats.inserted += result.inserted
                self.stats.batches += 1
            session.report_health(self._clock.now())
        return self.stats


class ProvinceSession:
    """One connection to the province, as one site's login."""

    def __init__(
        self, conn: psycopg.Connection[tuple[object, ...]], outbox: ProvinceOutbox, zone: ZoneInfo
    ) -> None:
        self._conn = conn
        self._outbox = outbox
        self._zone = zone
        self._months: set[str] = set()
        row = conn.execute("SELECT province.current_site()").fetchone()
        conn.commit()
        if row is None or row[0] is None:
            raise ProvinceError(
                "this login is no site's at the province (gatekiosk province add-site) / "
                "tài khoản này không thuộc khu vực nào ở cấp tỉnh"
            )
        self.site_id = str(row[0])
        self.assessment = AssessmentLink(
            conn, SelfAssessmentRepository(outbox.connection), self.site_id
        )
        conn.execute(_INCOMING_DDL)
        conn.commit()

    def send_batch(self, limit: int) -> BatchResult | None:
        """Send the oldest ``limit`` pending events; None when nothing is pending.

        The marks are cleared after the province's COMMIT: if this process
        dies in between, the batch goes again and changes nothing there.
        """
        batch = self._outbox.pending(limit=limit)
        if not batch.rowids:
            return None
        self._ensure_months(batch)
        inserted = self._insert(batch)
        self._outbox.mark_sent(batch.rowids)
        return BatchResult(sent=len(batch.rowids), inserted=inserted)

    def _ensure_months(self, batch: ProvinceBatch) -> None:
        # In transactions of their own: making a partition locks the parent
        # table, which must not last a whole batch (other hubs wait on it).
        for month in sorted(batch.months - self._months):
            self._conn.execute(
                "SELECT province.ensure_month(%s)", (date.fromisoformat(month + "-01"),)
            )
            self._conn.commit()
            self._months.add(month)

    def _insert(self, batch: ProvinceBatch) -> int:
        columns = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
        with self._conn.transaction(), self._conn.cursor() as cursor:
            with cursor.copy(sql.SQL("COPY incoming ({}) FROM STDIN").format(columns)) as copy:
                site = self.site_id
                for row in batch.rows:
                    copy.write_row((site, *row))
            cursor.execute(
                sql.SQL(
                    "INSERT INTO province.events ({c}) SELECT {c} FROM incoming "
                    "ON CONFLICT DO NOTHING"
                ).format(c=columns)
            )
            return cursor.rowcount

    def report_health(self, now: datetime) -> None:
        """Today's counts (the site's day), the backlog and the hub's clock; the
        server records when it heard the site by its own clock. With it, the
        self-assessment: a newer checklist down, pending ratings up."""
        self.assessment.sync(now)
        local = now.astimezone(self._zone)
        start = datetime.combine(local.date(), time(), self._zone)
        counts = self._outbox.day_counts(start, start + timedelta(days=1))
        self._conn.execute(
            "SELECT province.report_health(%s, %s, %s, %s, %s)",
            (now, local.date(), counts.allowed, counts.denied, self._outbox.count_pending()),
        )
        self._conn.commit()
