-- Until when a host asked us to wait (429 or 503 with Retry-After; 0: it did not). While it
-- is in the future nothing hurries its queue: no probe, no catch-up after another success.
ALTER TABLE host_health ADD COLUMN retry_after_until INTEGER NOT NULL DEFAULT 0;
