-- Scheduler (issue 6): leader epoch, the fire ledger (outbox), jobs first seen,
-- market-closure overrides, and the probe task's run counter.

-- One row: the current leadership term. Incremented by each new leader; claims are fenced on it.
CREATE TABLE scheduler_leader (
    id          smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    epoch       bigint NOT NULL DEFAULT 0,
    leader      text,
    acquired_at timestamptz
);
INSERT INTO scheduler_leader (id, epoch) VALUES (1, 0);

-- When the scheduler first knew each job: catch-up never replays fires from before it.
CREATE TABLE scheduler_jobs (
    job_id        text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);

-- The outbox: a fire is claimed (fenced on the epoch), then sent under task_id, then marked.
CREATE TABLE schedule_fires (
    job_id        text NOT NULL,
    scheduled_for timestamptz NOT NULL,
    epoch         bigint NOT NULL,
    task_id       uuid NOT NULL UNIQUE,
    task_name     text NOT NULL,
    kwargs        jsonb NOT NULL DEFAULT '{}',
    dedupe_key    text NOT NULL,
    state         text NOT NULL CHECK (state IN ('claimed', 'sent', 'duplicate', 'expired')),
    duplicate_of  uuid,
    source        text NOT NULL DEFAULT 'schedule' CHECK (source IN ('schedule', 'manual')),
    claimed_by    text NOT NULL,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    sent_epoch    bigint,
    PRIMARY KEY (job_id, scheduled_for)
);
-- Coinciding fires of jobs sending the same task and kwargs: at most one is not a duplicate.
CREATE UNIQUE INDEX schedule_fires_one_per_dedupe
    ON schedule_fires (dedupe_key, scheduled_for) WHERE state <> 'duplicate';
CREATE INDEX schedule_fires_unsent ON schedule_fires (scheduled_for) WHERE state = 'claimed';
CREATE INDEX schedule_fires_recent ON schedule_fires (job_id, scheduled_for DESC);

-- Sudden exchange closures (days of mourning, storms) layered over the published calendar.
CREATE TABLE market_closures (
    day        date PRIMARY KEY,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Runs of the `scheduler_probe` task, counted per task id (each execution increments `runs`).
CREATE TABLE scheduler_probe_runs (
    task_id      uuid PRIMARY KEY,
    runs         integer NOT NULL,
    first_run_at timestamptz NOT NULL DEFAULT now(),
    last_run_at  timestamptz NOT NULL DEFAULT now()
);
