-- effnas schema 5: trials claimed by worker processes hold a lease, so that a worker that died
-- is noticed by the end of its lease rather than by a heartbeat limit each caller chose.

-- Until when the worker that claimed the trial (`worker`, attempt `attempts`) holds it unless it
-- extends the lease (a timestamp); NULL for a trial not running under a lease: pending,
-- finished, or claimed in-process by a search, whose trials are taken back on `--resume`.
ALTER TABLE trials ADD COLUMN lease_until TEXT;

-- The expiry scan: running trials whose lease has passed.
CREATE INDEX trials_by_lease ON trials (state, lease_until);

-- Heartbeats no longer decide anything (the lease does); `heartbeat_at` stays as the latest sign
-- of life, for people reading the database.
DROP INDEX trials_by_heartbeat;
