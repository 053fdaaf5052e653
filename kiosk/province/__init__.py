"""Many sites, one province: each site's hub uploads its events to PostgreSQL.

- :mod:`kiosk.province.setup`: the province server's schema (``schema.sql``,
  applied by ``gatekiosk province init``) and one login role per site.
- :mod:`kiosk.province.outbox`: the hub's side of the queue, in the site
  database (the ``province_pending`` mark of migration 0013).
- :mod:`kiosk.province.target`: the hub's ``[uplink]`` settings (server,
  login, the province's CA) as one libpq conninfo, TLS checked.
- :mod:`kiosk.province.uplink`: ``gatekiosk uplink``, batches sent with COPY
  and inserted idempotently, marked at the hub only after the commit.
- :mod:`kiosk.province.checklist`: the safety self-assessment checklist,
  checked and published as a new version (``gatekiosk province checklist``).
- :mod:`kiosk.province.assessment`: the uplink's part in it, the newest
  checklist down to the hub and the site's ratings up, idempotent by id.
"""
