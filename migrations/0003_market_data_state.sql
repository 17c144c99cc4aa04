-- Market-data state (issue 4): latest quotes, corporate actions, per-symbol fetch state,
-- and the asset columns reference data needs. Prices keep 0001's semantics: `close` is
-- split-adjusted and not dividend-adjusted; `adj_close` is both (docs/MARKET_DATA.md).
ALTER TABLE assets
    ADD COLUMN description     text,
    ADD COLUMN country         text,
    ADD COLUMN is_active       boolean NOT NULL DEFAULT true,
    ADD COLUMN info_source     text,
    ADD COLUMN info_updated_at timestamptz;

CREATE TABLE latest_quotes (
    symbol      text PRIMARY KEY REFERENCES assets (symbol) ON DELETE CASCADE,
    price       numeric(20, 6) NOT NULL,
    currency    text,
    market_time timestamptz,
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dividends (
    symbol      text NOT NULL REFERENCES assets (symbol) ON DELETE CASCADE,
    ex_date     date NOT NULL,
    amount      numeric(20, 8) NOT NULL CHECK (amount >= 0),
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, ex_date)
);

CREATE TABLE splits (
    symbol      text NOT NULL REFERENCES assets (symbol) ON DELETE CASCADE,
    date        date NOT NULL,
    numerator   numeric(20, 8) NOT NULL CHECK (numerator > 0),
    denominator numeric(20, 8) NOT NULL CHECK (denominator > 0),
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, date)
);

-- One row per symbol ever fetched: how fresh its data is and why the last attempt failed.
CREATE TABLE fetch_state (
    symbol               text PRIMARY KEY REFERENCES assets (symbol) ON DELETE CASCADE,
    last_attempt_at      timestamptz NOT NULL,
    last_success_at      timestamptz,
    last_stored_date     date,
    last_error           text,
    last_error_kind      text,
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    provider             text,
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX fetch_state_stale_idx ON fetch_state (last_success_at NULLS FIRST);
