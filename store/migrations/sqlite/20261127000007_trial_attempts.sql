-- effnas schema 7: the history of a trial's attempts. `trials` holds only the current attempt
-- (its number, worker, start and lease); a trial that a worker claimed, lost (its lease passed,
-- the worker was killed) and another finished had several, and this table keeps one row each.
--
-- The rows are written by triggers on `trials`, inside the very statements that claim, finish,
-- fail, requeue or release a trial, so every path that changes a trial (workers' fenced writes,
-- the search's in-process evaluator, lease expiry, `--resume`) keeps the history without a
-- second statement that could be left out or fail on its own.
CREATE TABLE trial_attempts (
    trial_id      INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    -- The trial's `attempts` count when it was claimed: 1, 2, ….
    attempt       INTEGER NOT NULL,
    worker        TEXT,
    started_at    TEXT,
    -- When it ended: the trial's `finished_at` when it completed or failed; the database's clock
    -- when it was taken back. NULL while it runs.
    ended_at      TEXT,
    -- The last heartbeat of the attempt (its worker's last sign of life), recorded when it ended.
    heartbeat_at  TEXT,
    outcome       TEXT    NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'complete', 'failed', 'reclaimed')),
    -- The trial's `failure` kind when the attempt failed it.
    failure       TEXT,
    PRIMARY KEY (trial_id, attempt)
);

-- A claim: the trial becomes running under a new attempt number. A release on an orderly stop
-- gives the number back (below), so the next claim may reuse it: that row is replaced.
CREATE TRIGGER trial_attempt_claimed AFTER UPDATE OF state, attempts ON trials
WHEN NEW.state = 'running' AND (OLD.state <> 'running' OR NEW.attempts <> OLD.attempts)
BEGIN
    INSERT OR REPLACE INTO trial_attempts (trial_id, attempt, worker, started_at)
    VALUES (NEW.id, NEW.attempts, NEW.worker, NEW.started_at);
END;

-- The end of a running attempt: completed, failed, or taken back. Taken back with its attempt
-- given back (a release on Ctrl-C, SIGTERM) it did not count, and its row goes; taken back with
-- the attempt counted (lease expired, process gone on `--resume`) it was reclaimed.
CREATE TRIGGER trial_attempt_ended AFTER UPDATE OF state, attempts ON trials
WHEN OLD.state = 'running' AND (NEW.state <> 'running' OR NEW.attempts <> OLD.attempts)
BEGIN
    DELETE FROM trial_attempts
    WHERE trial_id = OLD.id AND attempt = OLD.attempts
      AND NEW.state = 'pending' AND NEW.attempts < OLD.attempts;
    UPDATE trial_attempts
    SET ended_at = COALESCE(NEW.finished_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        heartbeat_at = OLD.heartbeat_at,
        outcome = CASE NEW.state WHEN 'complete' THEN 'complete' WHEN 'failed' THEN 'failed' ELSE 'reclaimed' END,
        failure = NEW.failure
    WHERE trial_id = OLD.id AND attempt = OLD.attempts
      AND NOT (NEW.state = 'pending' AND NEW.attempts < OLD.attempts);
END;

-- Databases from before: the latest attempt of every trial that has run is all that is known.
INSERT INTO trial_attempts (trial_id, attempt, worker, started_at, ended_at, heartbeat_at, outcome, failure)
SELECT id, attempts, worker, started_at, CASE WHEN state = 'running' THEN NULL ELSE finished_at END,
       CASE WHEN state = 'running' THEN NULL ELSE heartbeat_at END,
       state, failure
FROM trials
WHERE attempts > 0 AND state IN ('running', 'complete', 'failed');
