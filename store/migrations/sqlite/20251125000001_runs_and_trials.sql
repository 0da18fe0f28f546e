-- effnas schema 1: runs, their trials, and per-epoch training curves.
-- Timestamps are UTC text of one fixed width ('2025-11-25T18:33:07.125Z'); JSON is text.

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('search', 'compound', 'manual')),
    status        TEXT    NOT NULL CHECK (status IN ('running', 'complete', 'failed', 'interrupted')),
    config        TEXT    NOT NULL,
    seed          INTEGER,
    code_version  TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    finished_at   TEXT
);

CREATE INDEX runs_by_name ON runs (name);

CREATE TABLE trials (
    id                 INTEGER PRIMARY KEY,
    run_id             INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    arch               TEXT    NOT NULL,
    arch_hash          TEXT    NOT NULL,
    blocks             TEXT    NOT NULL,
    resolution         INTEGER NOT NULL,
    proxy_key          TEXT    NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'complete', 'failed')),
    worker             TEXT,
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at         TEXT    NOT NULL,
    started_at         TEXT,
    heartbeat_at       TEXT,
    finished_at        TEXT,
    accuracy           REAL,
    loss               REAL,
    params             INTEGER NOT NULL,
    flops              INTEGER NOT NULL,
    reward             REAL,
    latency_ms         REAL,
    seconds            REAL,
    images_per_second  REAL,
    error              TEXT
);

CREATE INDEX trials_by_run_state ON trials (run_id, state, id);
CREATE INDEX trials_by_arch ON trials (arch_hash, proxy_key, state);
CREATE INDEX trials_by_heartbeat ON trials (state, heartbeat_at);

CREATE TABLE trial_epochs (
    trial_id        INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
    epoch           INTEGER NOT NULL,
    train_loss      REAL,
    train_accuracy  REAL,
    val_loss        REAL,
    val_accuracy    REAL,
    learning_rate   REAL,
    seconds         REAL,
    PRIMARY KEY (trial_id, epoch)
);
