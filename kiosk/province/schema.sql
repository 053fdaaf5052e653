-- The province's PostgreSQL schema (gatekiosk province init): every site's
-- events, the sites and their health, and an audit of who read what.
-- Safe to run again: every statement is "if not exists" or replaces itself.
--
-- Roles (cluster-wide, NOLOGIN groups; logins are granted them):
--   province_site    a site's hub: may insert its own site's events only
--                    (row-level security on site_id), report its health;
--                    reads nothing but its own rows.
--   province_reader  the authority's web: reads everything, writes nothing
--                    but audit rows, through province.audit_request().
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
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS events_count_hourly ON province.events;
CREATE TRIGGER events_count_hourly AFTER INSERT ON province.events
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION province.count_hourly();

-- The authority's web records who asked for what and why, before it reads.
CREATE OR REPLACE FUNCTION province.audit_request(
    p_actor text, p_action text, p_site text, p_reason text, p_detail jsonb
) RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
    INSERT INTO province.audit (actor, action, site_id, reason, detail)
    VALUES (p_actor, p_action, p_site, p_reason, p_detail) RETURNING id
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA province FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA province FROM PUBLIC;
GRANT EXECUTE ON FUNCTION province.current_site() TO province_site, province_reader;
GRANT EXECUTE ON FUNCTION province.ensure_month(date) TO province_site;
GRANT EXECUTE ON FUNCTION province.report_health(timestamptz, date, integer, integer, integer)
    TO province_site;
GRANT EXECUTE ON FUNCTION province.audit_request(text, text, text, text, jsonb)
    TO province_reader;

GRANT INSERT, SELECT ON province.events TO province_site;
GRANT SELECT ON province.checklists TO province_site;
GRANT INSERT, SELECT ON province.assessments TO province_site;
GRANT SELECT ON province.events, province.sites, province.site_health, province.audit,
    province.hourly, province.checklists, province.assessments
    TO province_reader;

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
CREATE POLICY reader_reads_all ON province.events FOR SELECT TO province_reader
    USING (true);
