-- effnas schema 4: a lease on each run, so that a second process cannot resume a run whose
-- process is still alive (both would train the same trials).

-- The process that is running the run ('host:pid-namespace:pid:process-start', see
-- store/SCHEMA.md); NULL when no process holds it.
ALTER TABLE runs ADD COLUMN owner TEXT;
-- Until when the owner's claim holds (a timestamp); the owner renews it while it runs. Another
-- process may take the run over once this has passed, or at once when the owner is known gone.
ALTER TABLE runs ADD COLUMN lease_until TEXT;
