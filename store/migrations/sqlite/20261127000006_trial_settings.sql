-- effnas schema 6: fidelity runs, and trials trained under one of several settings of their run
-- (a fidelity run's cheap proxy per seed and its reference; later, successive-halving rungs and
-- finalists re-trained with seeds).

-- `runs.kind` admits 'fidelity'. SQLite cannot alter a CHECK constraint, and rebuilding `runs`
-- would need foreign keys off (dropping it would cascade into every trial), which cannot be
-- done inside the migration's transaction. A constraint that only admits one more value holds
-- for every existing row, so the stored definition is edited in place, as SQLite's documentation
-- describes for loosening a constraint ("ALTER TABLE", section 7), within this transaction; the
-- ALTER TABLE statements below raise the schema version, so every connection re-reads it.
PRAGMA writable_schema = ON;
UPDATE sqlite_master
SET sql = replace(sql, 'CHECK (kind IN (''search'', ''compound'', ''manual''))',
                       'CHECK (kind IN (''search'', ''compound'', ''manual'', ''fidelity''))')
WHERE type = 'table' AND name = 'runs';
PRAGMA writable_schema = OFF;

-- Which of its run's training settings a trial is trained under: an index into the list the
-- run's configuration holds (`settings`); 0, the run's one proxy, for search and compound runs.
ALTER TABLE trials ADD COLUMN setting INTEGER NOT NULL DEFAULT 0;

-- The trial this one continues or repeats: the lower rung it was promoted from, or the trial
-- whose architecture it re-trains under another setting or seed.
ALTER TABLE trials ADD COLUMN parent_id INTEGER REFERENCES trials (id) ON DELETE SET NULL;
CREATE INDEX trials_by_parent ON trials (parent_id);
