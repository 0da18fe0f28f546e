-- effnas schema 8: the batch a trial was queued in. A search queues its trials in batches, one
-- transaction each, and retries a call that failed on a dropped connection; if the commit had
-- gone through before the connection dropped, the retry would queue the batch a second time.
-- Each call carries a key made once for all its tries, and the insert first looks for trials
-- already queued under it: a repeated call returns their ids instead of adding copies.
ALTER TABLE trials ADD COLUMN queued_batch TEXT;

CREATE INDEX trials_by_queued_batch ON trials (run_id, queued_batch) WHERE queued_batch IS NOT NULL;
