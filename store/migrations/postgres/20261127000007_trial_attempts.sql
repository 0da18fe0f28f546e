-- effnas schema 7: the history of a trial's attempts (see the SQLite migration of the same
-- number for why). `trials` holds only the current attempt; this table keeps one row for each,
-- written by a trigger inside the statements that claim, finish, fail, requeue or release a
-- trial.
CREATE TABLE trial_attempts (
    trial_id      BIGINT  NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    attempt       BIGINT  NOT NULL,
    worker        TEXT,
    started_at    TEXT    COLLATE "C",
    ended_at      TEXT    COLLATE "C",
    heartbeat_at  TEXT    COLLATE "C",
    outcome       TEXT    NOT NULL DEFAULT 'running'
                  CHECK (outcome IN ('running', 'complete', 'failed', 'reclaimed')),
    failure       TEXT,
    PRIMARY KEY (trial_id, attempt)
);

CREATE FUNCTION effnas_trial_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- The end of a running attempt: completed, failed, or taken back. Given back on an orderly
    -- stop (attempts - 1) it did not count and its row goes; otherwise it was reclaimed.
    IF OLD.state = 'running' AND (NEW.state <> 'running' OR NEW.attempts <> OLD.attempts) THEN
        IF NEW.state = 'pending' AND NEW.attempts < OLD.attempts THEN
            DELETE FROM trial_attempts WHERE trial_id = OLD.id AND attempt = OLD.attempts;
        ELSE
            UPDATE trial_attempts
            SET ended_at = COALESCE(NEW.finished_at,
                                    to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
                heartbeat_at = OLD.heartbeat_at,
                outcome = CASE NEW.state WHEN 'complete' THEN 'complete' WHEN 'failed' THEN 'failed'
                                         ELSE 'reclaimed' END,
                failure = NEW.failure
            WHERE trial_id = OLD.id AND attempt = OLD.attempts;
        END IF;
    END IF;
    -- A claim: running under a new attempt number (a number given back may come again).
    IF NEW.state = 'running' AND (OLD.state <> 'running' OR NEW.attempts <> OLD.attempts) THEN
        INSERT INTO trial_attempts (trial_id, attempt, worker, started_at)
        VALUES (NEW.id, NEW.attempts, NEW.worker, NEW.started_at)
        ON CONFLICT (trial_id, attempt) DO UPDATE
        SET worker = EXCLUDED.worker, started_at = EXCLUDED.started_at, ended_at = NULL,
            heartbeat_at = NULL, outcome = 'running', failure = NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trial_attempts AFTER UPDATE OF state, attempts ON trials
FOR EACH ROW EXECUTE FUNCTION effnas_trial_attempts();

INSERT INTO trial_attempts (trial_id, attempt, worker, started_at, ended_at, heartbeat_at, outcome, failure)
SELECT id, attempts, worker, started_at, CASE WHEN state = 'running' THEN NULL ELSE finished_at END,
       CASE WHEN state = 'running' THEN NULL ELSE heartbeat_at END,
       state, failure
FROM trials
WHERE attempts > 0 AND state IN ('running', 'complete', 'failed');
