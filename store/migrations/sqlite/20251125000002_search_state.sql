-- effnas schema 2: what the search and compound stages keep beyond single trials:
-- trial provenance and free-form extras, controller checkpoints, the compound grid, scaled models.

ALTER TABLE trials ADD COLUMN step INTEGER;
ALTER TABLE trials ADD COLUMN extra TEXT;
ALTER TABLE trials ADD COLUMN reused_from INTEGER REFERENCES trials (id) ON DELETE SET NULL;

CREATE TABLE controller_checkpoints (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step        INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    blob        BLOB,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE compound_points (
    id            INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    alpha         REAL    NOT NULL,
    beta          REAL    NOT NULL,
    gamma         REAL    NOT NULL,
    phi           REAL    NOT NULL,
    flops_factor  REAL    NOT NULL,
    trial_id      INTEGER REFERENCES trials (id) ON DELETE SET NULL,
    created_at    TEXT    NOT NULL
);

CREATE INDEX compound_points_by_run ON compound_points (run_id, id);

CREATE TABLE scaled_models (
    id                     INTEGER PRIMARY KEY,
    run_id                 INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name                   TEXT    NOT NULL,
    phi                    REAL    NOT NULL,
    width                  REAL    NOT NULL,
    depth                  REAL    NOT NULL,
    resolution_multiplier  REAL    NOT NULL,
    resolution             INTEGER NOT NULL,
    dropout                REAL    NOT NULL,
    arch                   TEXT    NOT NULL,
    arch_hash              TEXT    NOT NULL,
    blocks                 TEXT    NOT NULL,
    params                 INTEGER NOT NULL,
    flops                  INTEGER NOT NULL,
    created_at             TEXT    NOT NULL
);

CREATE INDEX scaled_models_by_run ON scaled_models (run_id, id);
