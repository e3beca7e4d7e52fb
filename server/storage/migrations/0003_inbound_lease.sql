-- A claimed inbound activity carries a lease of its own, so that a restart can release the
-- leases of a crashed process without hurrying retries that are backing off on purpose.
ALTER TABLE inbox_activities ADD COLUMN locked_until INTEGER NOT NULL DEFAULT 0;
