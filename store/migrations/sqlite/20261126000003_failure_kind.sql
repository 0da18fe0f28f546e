-- effnas schema 3: a failed trial's kind in a column of its own, and the rewards that manual
-- trainings stored on another basis than searches set aside.

-- 1. Why a trial failed, one of a fixed list, so that users can `GROUP BY failure`; NULL unless
--    the trial failed. `error` keeps the one-line message.
ALTER TABLE trials ADD COLUMN failure TEXT CHECK (
    failure IS NULL
    OR (state = 'failed'
        AND failure IN ('diverged', 'out_of_memory', 'time_limit', 'invalid', 'rejected', 'lost', 'error'))
);

-- Failed trials recorded before this version get their kind from the words of their message, as
-- the evaluator, the orchestrator and the store wrote them. The anchored forms (written by
-- effnas itself, with the cause's text after a colon) come first. LIKE ignores ASCII case.
UPDATE trials SET failure = CASE
    WHEN error LIKE 'rejected before training%' THEN 'rejected'
    WHEN error LIKE 'not a member of the run''s space%' THEN 'invalid'
    WHEN error LIKE 'stored architecture is invalid%' THEN 'invalid'
    WHEN error LIKE 'its worker stopped sending heartbeats%' THEN 'lost'
    WHEN error LIKE 'loss is%' OR error LIKE '%mean loss of epoch%' THEN 'diverged'
    WHEN error LIKE '%out of memory%' OR error LIKE '%not enough memory%' OR error LIKE '%can''t allocate%'
        THEN 'out_of_memory'
    WHEN error LIKE '%time limit%' THEN 'time_limit'
    ELSE 'error'
END
WHERE state = 'failed' AND COALESCE(error, '') NOT LIKE 'same architecture as failed trial %';

-- A trial failed without training because an identical one failed ('same architecture as
-- failed trial 12: …') failed the same way: it takes that trial's kind, or 'error' when the
-- trial it names is gone.
UPDATE trials SET failure = COALESCE(
    (SELECT source.failure FROM trials AS source
     WHERE source.id = CAST(substr(trials.error, length('same architecture as failed trial ') + 1) AS INTEGER)),
    'error'
)
WHERE state = 'failed' AND error LIKE 'same architecture as failed trial %';

-- 2. Until now `effnas train --db` (runs of kind 'manual') stored a reward computed on the proxy
--    network's own multiply-adds, while searches compute it on the searched network's. Those
--    rewards are not comparable with search rewards: they leave `reward` (NULL) and are kept in
--    `extra` as `proxy_reward`, with a note. Trials that copied their result from such a trial
--    (`reused_from`, followed through copies of copies) copied the same reward and are marked
--    too. `runs` stores no reward: a run's best reward is computed from its trials when read.
WITH RECURSIVE proxy_basis (id) AS (
    SELECT t.id FROM trials AS t JOIN runs AS r ON r.id = t.run_id WHERE r.kind = 'manual'
    UNION
    SELECT t.id FROM trials AS t JOIN proxy_basis AS p ON t.reused_from = p.id
)
UPDATE trials SET
    extra = json_set(
        CASE
            WHEN extra IS NULL THEN json_object()
            WHEN NOT json_valid(extra) THEN json_object('extra', extra)
            WHEN json_type(extra) = 'object' THEN extra
            ELSE json_object('extra', json(extra))
        END,
        '$.proxy_reward', reward,
        '$.reward_note', 'computed on the proxy network before schema 3; not comparable with search rewards'
    ),
    reward = NULL
WHERE reward IS NOT NULL AND id IN (SELECT id FROM proxy_basis);
