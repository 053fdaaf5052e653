-- The province's PostgreSQL schema (gatekiosk province init): every site's
-- events, the sites and their health, and an audit of who read what.
-- Safe to run again: every statement is "if not exists" or replaces itself.
--
-- Roles (cluster-wide, NOLOGIN groups; logins are granted them):
--   province_site    a site's hub: may insert its own site's events only
--                    (row-level security on site_id), report its health;
--                    reads nothing but its own rows.
--   province_reader  the authority's web: reads the sites, their health, the
--                    hourly counts, the ratings and the audit; never an event
--                    directly. A site's window of events leaves only through
--                    province.open_window() (checks the request and writes
--                    its audit row, committed by the caller) and then
--                    province.window_rows(audit id), which refuses any id
--                    whose audit row is not committed, not this login's,
--                    already read or older than the policy allows: no event
--                    leaves without an audit row that stays.
--
-- Privacy: no name, masked or full ID number, birth date or free-text note
-- ever leaves a site. subject_hash is keyed by the site's own key, so the
-- same person has unrelated hashes at two sites: the province counts and
-- reads a site's window of entries, it cannot follow one person across sites.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'province_site') THEN
        CREATE ROLE province_site NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'province_reader') THEN
        CREATE ROLE province_reader NOLOGIN;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS province;
REVOKE ALL ON SCHEMA province FROM PUBLIC;
GRANT USAGE ON SCHEMA province TO province_site, province_reader;

CREATE TABLE IF NOT EXISTS province.sites (
    id          text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,32}$'),
    name        text NOT NULL DEFAULT '',
    role_name   text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_heard  timestamptz
);

-- Partitioned by the month of the event's UTC time. The key includes at_utc
-- (PostgreSQL requires the partition key in a partitioned table's key); an
-- event's id and time never change, so (site_id, id, at_utc) is as unique
-- as the id, and INSERT ... ON CONFLICT DO NOTHING makes a batch sent twice
-- harmless.
CREATE TABLE IF NOT EXISTS province.events (
    site_id         text NOT NULL,
    id              text NOT NULL,
    at_utc          timestamptz NOT NULL,
    utc_offset_min  integer NOT NULL,
    gate_id         text NOT NULL,
    boot_id         text NOT NULL,
    seq             bigint NOT NULL,
    clock_synced    boolean NOT NULL,
    direction       text NOT NULL,
    decision        text NOT NULL,
    reason          text NOT NULL,
    kind            text NOT NULL,
    subject_hash    text,
    override        boolean NOT NULL,
    warning         text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, id, at_utc)
) PARTITION BY RANGE (at_utc);
CREATE INDEX IF NOT EXISTS events_site_time ON province.events (site_id, at_utc);
-- Keyed by a province-wide key, only where the law requires following one
-- person across sites (a hub setting, off by default): NULL otherwise.
ALTER TABLE province.events ADD COLUMN IF NOT EXISTS province_subject_hash text;

-- Entries, exits and refusals per site and UTC hour, kept by a trigger on
-- every insert into province.events (rows ON CONFLICT skipped are not
-- counted), so the authority's dashboard reads a few thousand rows, not
-- millions of events.
CREATE TABLE IF NOT EXISTS province.hourly (
    site_id     text NOT NULL,
    hour        timestamptz NOT NULL,
    entries     integer NOT NULL DEFAULT 0,
    exits       integer NOT NULL DEFAULT 0,
    denied      integer NOT NULL DEFAULT 0,
    PRIMARY KEY (site_id, hour)
);

CREATE TABLE IF NOT EXISTS province.site_health (
    site_id         text PRIMARY KEY REFERENCES province.sites (id),
    reported_at     timestamptz NOT NULL,
    hub_time        timestamptz NOT NULL,
    day             date NOT NULL,
    allowed_today   integer NOT NULL,
    denied_today    integer NOT NULL,
    pending         integer NOT NULL
);

CREATE TABLE IF NOT EXISTS province.audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    db_role     text NOT NULL DEFAULT session_user,
    action      text NOT NULL,
    site_id     text,
    reason      text NOT NULL DEFAULT '',
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
-- A window export's audit row: the transaction that wrote it (window_rows
-- reads nothing until it has committed) and when its rows were read (once).
ALTER TABLE province.audit ADD COLUMN IF NOT EXISTS xact xid8;
ALTER TABLE province.audit ADD COLUMN IF NOT EXISTS read_at timestamptz;

-- The owner's limits on a window export, one row; the web's own setting
-- (province_web.export_max_days) can only be stricter. Change with e.g.
-- UPDATE province.export_policy SET window_max_days = 62; init keeps it.
CREATE TABLE IF NOT EXISTS province.export_policy (
    only_row          boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    window_max_days   integer NOT NULL DEFAULT 31 CHECK (window_max_days BETWEEN 1 AND 366),
    request_ttl_min   integer NOT NULL DEFAULT 10 CHECK (request_ttl_min BETWEEN 1 AND 1440)
);
INSERT INTO province.export_policy DEFAULT VALUES ON CONFLICT (only_row) DO NOTHING;

-- The safety self-assessment: the province publishes a versioned checklist
-- (gatekiosk province checklist), a site's manager fills it on the hub, the
-- uplink sends it here. questions: [{"id": "...", "vi": "...", "en": "..."}].
-- A rating older than stale_after_days, or made on an older version, is stale.
CREATE TABLE IF NOT EXISTS province.checklists (
    version           integer PRIMARY KEY CHECK (version > 0),
    published_at      timestamptz NOT NULL DEFAULT now(),
    title             text NOT NULL,
    questions         jsonb NOT NULL CHECK (jsonb_typeof(questions) = 'array'),
    stale_after_days  integer NOT NULL DEFAULT 30 CHECK (stale_after_days > 0)
);

-- answers: {"question id": true | false}; score: the percentage of measures
-- in place (0-100). id is made at the hub, so a resend changes nothing.
CREATE TABLE IF NOT EXISTS province.assessments (
    site_id            text NOT NULL REFERENCES province.sites (id),
    id                 text NOT NULL,
    checklist_version  integer NOT NULL REFERENCES province.checklists (version),
    made_at            timestamptz NOT NULL,
    answers            jsonb NOT NULL CHECK (jsonb_typeof(answers) = 'object'),
    score              integer NOT NULL CHECK (score BETWEEN 0 AND 100),
    received_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site_id, id)
);
CREATE INDEX IF NOT EXISTS assessments_latest ON province.assessments (site_id, made_at DESC);

-- The site whose login runs the query: NULL for any other role.
CREATE OR REPLACE FUNCTION province.current_site() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$ SELECT id FROM province.sites WHERE role_name = session_user $$;

-- The month partitions a batch needs, made by the schema's owner (the sites
-- have no DDL rights). Serialised by an advisory lock: two hubs may ask for
-- the same month at once.
CREATE OR REPLACE FUNCTION province.ensure_month(p_month date) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    first_day date := date_trunc('month', p_month)::date;
    part text := format('events_%s', to_char(first_day, 'YYYY_MM'));
BEGIN
    IF to_regclass(format('province.%I', part)) IS NOT NULL THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('province.ensure_month'));
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS province.%I PARTITION OF province.events '
        'FOR VALUES FROM (%L) TO (%L)',
        part,
        (first_day::timestamp AT TIME ZONE 'UTC'),
        ((first_day + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
END
$$;

-- A hub's health: last heard (the server's clock), today's counts, backlog.
CREATE OR REPLACE FUNCTION province.report_health(
    p_hub_time timestamptz, p_day date, p_allowed integer, p_denied integer, p_pending integer
) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    site text := province.current_site();
BEGIN
    IF site IS NULL THEN
        RAISE EXCEPTION 'role % is no site''s', session_user USING ERRCODE = '42501';
    END IF;
    UPDATE province.sites SET last_heard = now() WHERE id = site;
    INSERT INTO province.site_health AS h
        (site_id, reported_at, hub_time, day, allowed_today, denied_today, pending)
    VALUES (site, now(), p_hub_time, p_day, p_allowed, p_denied, p_pending)
    ON CONFLICT (site_id) DO UPDATE SET
        reported_at = excluded.reported_at, hub_time = excluded.hub_time,
        day = excluded.day, allowed_today = excluded.allowed_today,
        denied_today = excluded.denied_today, pending = excluded.pending;
END
$$;

-- Keeps province.hourly: runs as the schema's owner once per INSERT
-- statement, over the rows that statement really inserted.
CREATE OR REPLACE FUNCTION province.count_hourly() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    INSERT INTO province.hourly AS h (site_id, hour, entries, exits, denied)
    SELECT site_id, date_trunc('hour', at_utc AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           count(*) FILTER (WHERE decision = 'allow' AND direction = 'in'),
           count(*) FILTER (WHERE decision = 'allow' AND direction <> 'in'),
           count(*) FILTER (WHERE decision <> 'allow')
    FROM inserted GROUP BY 1, 2
    ON CONFLICT (site_id, hour) DO UPDATE SET
        entries = h.entries + excluded.entries,
        exits = h.exits + excluded.exits,
        denied = h.denied + excluded.denied;
    -- Heard from: the reception of its newest row (the server's clock; a
    -- received_at a site set in the future counts as now), so the web
    -- never reads province.events to judge a site alive.
    UPDATE province.sites AS s SET last_heard = greatest(s.last_heard, heard.at)
    FROM (SELECT site_id, least(max(received_at), now()) AS at FROM inserted GROUP BY site_id)
        AS heard
    WHERE s.id = heard.site_id AND s.last_heard IS DISTINCT FROM greatest(s.last_heard, heard.at);
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS events_count_hourly ON province.events;
CREATE TRIGGER events_count_hourly AFTER INSERT ON province.events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION province.count_hourly();
-- Servers set up before the trigger marked sites heard: their recent
-- events' reception, once (a site already marked later is left alone).
UPDATE province.sites AS s SET last_heard = greatest(s.last_heard, recent.at)
FROM (SELECT site_id, least(max(received_at), now()) AS at FROM province.events
      WHERE at_utc >= now() - interval '2 days' GROUP BY site_id) AS recent
WHERE s.id = recent.site_id AND s.last_heard IS DISTINCT FROM greatest(s.last_heard, recent.at);

-- Older versions let the web write audit rows of its own wording and then
-- read events itself; the audit is now the database's, in open_window.
DROP FUNCTION IF EXISTS province.audit_request(text, text, text, text, jsonb);

-- A request for one site's window of events: checked, then recorded in
-- province.audit (the login as db_role, this transaction as xact); the
-- audit row's id. The caller commits, then reads the rows with
-- province.window_rows(id). Refusals are SQLSTATE 22023 (a bad request) or
-- P0002 (no such site), each message Vietnamese / English.
CREATE OR REPLACE FUNCTION province.open_window(
    p_actor text, p_reason text, p_site text, p_from timestamptz, p_to timestamptz,
    p_format text, p_zone text DEFAULT 'UTC'
) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    max_days integer := (SELECT window_max_days FROM province.export_policy);
    reason text := btrim(coalesce(p_reason, ''));
    actor text := btrim(coalesce(p_actor, ''));
    audit_id bigint;
BEGIN
    IF actor = '' OR length(actor) > 64 THEN
        RAISE EXCEPTION 'Phải ghi người yêu cầu (tối đa 64 ký tự). / The requester is required '
            '(64 characters at most).' USING ERRCODE = '22023';
    END IF;
    IF reason = '' THEN
        RAISE EXCEPTION 'Phải ghi lý do yêu cầu. / A reason is required.'
            USING ERRCODE = '22023';
    END IF;
    IF length(reason) > 500 THEN
        RAISE EXCEPTION 'Lý do dài quá 500 ký tự. / The reason is longer than 500 characters.'
            USING ERRCODE = '22023';
    END IF;
    IF p_from IS NULL OR p_to IS NULL OR p_from >= p_to THEN
        RAISE EXCEPTION 'Thời điểm bắt đầu phải trước thời điểm kết thúc. / '
            'The start must be before the end.' USING ERRCODE = '22023';
    END IF;
    IF p_to - p_from > make_interval(days => max_days) THEN
        RAISE EXCEPTION 'Khoảng thời gian dài quá % ngày. / The window is longer than % days.',
            max_days, max_days USING ERRCODE = '22023';
    END IF;
    IF p_format IS NULL OR p_format NOT IN ('csv', 'xlsx') THEN
        RAISE EXCEPTION 'Định dạng phải là CSV hoặc Excel. / The format must be CSV or Excel.'
            USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM province.sites WHERE id = p_site) THEN
        RAISE EXCEPTION 'Không có khu này. / There is no such site.' USING ERRCODE = 'P0002';
    END IF;
    INSERT INTO province.audit (actor, db_role, action, site_id, reason, detail, xact)
    VALUES (actor, session_user, 'export-window', p_site, reason,
            jsonb_build_object('from', p_from, 'to', p_to, 'format', p_format,
                               'zone', coalesce(p_zone, 'UTC')),
            pg_current_xact_id())
    RETURNING id INTO audit_id;
    RETURN audit_id;
END
$$;

-- The window an audited request asked for, claimed once: refused (42501)
-- unless the audit row is a window request of this login, committed (by
-- another transaction: a caller cannot read and then roll its audit back),
-- not read before and younger than export_policy.request_ttl_min. Called by
-- window_rows only; granted to no one.
CREATE OR REPLACE FUNCTION province.claim_window(
    p_audit_id bigint, OUT site_id text, OUT from_utc timestamptz, OUT to_utc timestamptz
)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    asked province.audit;
    ttl integer := (SELECT request_ttl_min FROM province.export_policy);
BEGIN
    SELECT * INTO asked FROM province.audit WHERE id = p_audit_id FOR UPDATE;
    IF NOT FOUND OR asked.action <> 'export-window' OR asked.db_role <> session_user
            OR asked.xact IS NULL THEN
        RAISE EXCEPTION 'Không có yêu cầu số % của tài khoản này. / '
            'No window request % of this login.', p_audit_id, p_audit_id
            USING ERRCODE = '42501';
    END IF;
    IF asked.at < clock_timestamp() - make_interval(mins => ttl) THEN
        RAISE EXCEPTION 'Yêu cầu số % đã quá % phút; hãy yêu cầu lại. / '
            'Request % is older than % minutes; ask again.', p_audit_id, ttl, p_audit_id, ttl
            USING ERRCODE = '42501';
    END IF;
    IF pg_xact_status(asked.xact) IS DISTINCT FROM 'committed' THEN
        RAISE EXCEPTION 'Yêu cầu số % chưa được ghi nhật ký (chưa commit). / '
            'Request % is not committed to the audit yet.', p_audit_id, p_audit_id
            USING ERRCODE = '42501';
    END IF;
    IF asked.read_at IS NOT NULL THEN
        RAISE EXCEPTION 'Yêu cầu số % đã được đọc; hãy yêu cầu lại. / '
            'Request % was read already; ask again.', p_audit_id, p_audit_id
            USING ERRCODE = '42501';
    END IF;
    UPDATE province.audit SET read_at = clock_timestamp() WHERE id = p_audit_id;
    site_id := asked.site_id;
    from_utc := (asked.detail ->> 'from')::timestamptz;
    to_utc := (asked.detail ->> 'to')::timestamptz;
END
$$;

-- The events of exactly the audited request p_audit_id, in time order.
-- LANGUAGE sql (not plpgsql, whose RETURN QUERY first copies every row
-- into a tuplestore): called in a select list, as
--   SELECT (w).* FROM (SELECT province.window_rows(id) AS w) AS rows
-- it returns its rows one at a time as a cursor fetches them; called in
-- FROM, PostgreSQL gathers them all first (to disk past work_mem).
CREATE OR REPLACE FUNCTION province.window_rows(p_audit_id bigint)
RETURNS TABLE (
    site_id text, id text, at_utc timestamptz, utc_offset_min integer, gate_id text,
    boot_id text, seq bigint, clock_synced boolean, direction text, decision text,
    reason text, kind text, subject_hash text, province_subject_hash text, override boolean,
    warning text, received_at timestamptz
)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
    -- First the claim (refused, or marked read), in a statement of its own:
    -- it runs even when the plan below scans nothing (no event, no month).
    SELECT province.claim_window(p_audit_id);
    SELECT e.site_id, e.id, e.at_utc, e.utc_offset_min, e.gate_id, e.boot_id, e.seq,
           e.clock_synced, e.direction, e.decision, e.reason, e.kind, e.subject_hash,
           e.province_subject_hash, e.override, e.warning, e.received_at
    FROM province.events e
    WHERE e.site_id = (SELECT a.site_id FROM province.audit a WHERE a.id = p_audit_id)
      AND e.at_utc >= (SELECT (a.detail ->> 'from')::timestamptz
                       FROM province.audit a WHERE a.id = p_audit_id)
      AND e.at_utc < (SELECT (a.detail ->> 'to')::timestamptz
                      FROM province.audit a WHERE a.id = p_audit_id)
    ORDER BY e.at_utc, e.id
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA province FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA province FROM PUBLIC;
GRANT EXECUTE ON FUNCTION province.current_site() TO province_site, province_reader;
GRANT EXECUTE ON FUNCTION province.ensure_month(date) TO province_site;
GRANT EXECUTE ON FUNCTION province.report_health(timestamptz, date, integer, integer, integer)
    TO province_site;
GRANT EXECUTE ON FUNCTION
    province.open_window(text, text, text, timestamptz, timestamptz, text, text),
    province.window_rows(bigint)
    TO province_reader;

GRANT INSERT, SELECT ON province.events TO province_site;
GRANT SELECT ON province.checklists TO province_site;
GRANT INSERT, SELECT ON province.assessments TO province_site;
GRANT SELECT ON province.sites, province.site_health, province.audit, province.hourly,
    province.checklists, province.assessments, province.export_policy
    TO province_reader;
-- Older versions let the reader SELECT every event: taken back, on the
-- partitioned table and on every month's partition.
REVOKE ALL ON province.events FROM province_reader;
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'province.events'::regclass
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, province_reader', part);
    END LOOP;
END
$$;

ALTER TABLE province.assessments ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS site_rates_own ON province.assessments;
CREATE POLICY site_rates_own ON province.assessments FOR INSERT TO province_site
    WITH CHECK (site_id = province.current_site());
DROP POLICY IF EXISTS site_reads_own_ratings ON province.assessments;
CREATE POLICY site_reads_own_ratings ON province.assessments FOR SELECT TO province_site
    USING (site_id = province.current_site());
DROP POLICY IF EXISTS reader_reads_all_ratings ON province.assessments;
CREATE POLICY reader_reads_all_ratings ON province.assessments FOR SELECT TO province_reader
    USING (true);

ALTER TABLE province.events ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS site_inserts_own ON province.events;
CREATE POLICY site_inserts_own ON province.events FOR INSERT TO province_site
    WITH CHECK (site_id = province.current_site());
DROP POLICY IF EXISTS site_reads_own ON province.events;
CREATE POLICY site_reads_own ON province.events FOR SELECT TO province_site
    USING (site_id = province.current_site());
DROP POLICY IF EXISTS reader_reads_all ON province.events;
