-- effnas schema 8: the batch a trial was queued in (see the SQLite migration of the same number
-- for why): a retried call that queues trials finds the ones its first try committed.
ALTER TABLE trials ADD COLUMN queued_batch TEXT COLLATE "C";

CREATE INDEX trials_by_queued_batch ON trials (run_id, queued_batch) WHERE queued_batch IS NOT NULL;
