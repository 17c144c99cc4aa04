-- Users, their API keys (stored as SHA-256 of the key; keys are 256-bit random), the task
-- registry the API answers from, and stored responses for Idempotency-Key replays.
CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash      bytea NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE tasks (
    id            text PRIMARY KEY,
    owner_id      bigint REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL,
    params        jsonb NOT NULL DEFAULT '{}',
    params_hash   text NOT NULL,
    state         text NOT NULL DEFAULT 'PENDING'
                  CHECK (state IN ('PENDING', 'STARTED', 'PROGRESS', 'RETRY',
                                   'SUCCESS', 'FAILURE', 'REVOKED')),
    progress      jsonb,
    result        jsonb,
    error         jsonb,
    request_id    text,
    attempts      integer NOT NULL DEFAULT 0,
    delivery      integer NOT NULL DEFAULT -1,  -- Celery's retries count of the running copy
    worker        text,
    submitted_at  timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    heartbeat_at  timestamptz,
    cancel_requested_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- History pages, newest first, per owner.
CREATE INDEX tasks_owner_submitted ON tasks (owner_id, submitted_at DESC, id DESC);
-- The sweep looks only at unfinished tasks.
CREATE INDEX tasks_unfinished ON tasks (state, heartbeat_at)
    WHERE state IN ('PENDING', 'STARTED', 'PROGRESS', 'RETRY');
-- At most one unfinished task per owner, name and parameters: duplicate submits join it.
CREATE UNIQUE INDEX tasks_one_active_per_params ON tasks (owner_id, name, params_hash)
    WHERE state IN ('PENDING', 'STARTED', 'PROGRESS', 'RETRY');

CREATE TABLE idempotency_keys (
    api_key_id    bigint NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status_code   integer NOT NULL,
    response      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (api_key_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
