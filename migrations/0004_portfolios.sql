-- Portfolios, their transactions, daily snapshots, performance results and reports (issue 5).
CREATE TABLE portfolios (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    base_currency text NOT NULL DEFAULT 'USD' CHECK (base_currency ~ '^[A-Z]{3}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);

-- id is the recorded order: same-date transactions apply by ascending id.
CREATE TABLE transactions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    portfolio_id bigint NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    type         text NOT NULL
                 CHECK (type IN ('BUY', 'SELL', 'DIVIDEND', 'DEPOSIT', 'WITHDRAWAL', 'FEE')),
    date         date NOT NULL,
    symbol       text,
    quantity     numeric(28, 10),
    price        numeric(20, 6),
    amount       numeric(20, 6),
    fee          numeric(20, 6) NOT NULL DEFAULT 0 CHECK (fee >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (
        CASE type
            WHEN 'BUY' THEN symbol IS NOT NULL AND quantity > 0 AND price >= 0
            WHEN 'SELL' THEN symbol IS NOT NULL AND quantity > 0 AND price >= 0
            WHEN 'DIVIDEND' THEN symbol IS NOT NULL AND amount > 0
            ELSE amount > 0
        END
    )
);
CREATE INDEX transactions_portfolio_date ON transactions (portfolio_id, date, id);

-- One row per portfolio and valuation date; holdings is the per-position detail.
CREATE TABLE portfolio_snapshots (
    portfolio_id   bigint NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    date           date NOT NULL,
    total_value    numeric(24, 6) NOT NULL,
    market_value   numeric(24, 6) NOT NULL,
    cash           numeric(24, 6) NOT NULL,
    cost_basis     numeric(24, 6) NOT NULL,
    unrealized_pnl numeric(24, 6) NOT NULL,
    realized_pnl   numeric(24, 6) NOT NULL,
    income         numeric(24, 6) NOT NULL,
    fees           numeric(24, 6) NOT NULL,
    net_invested   numeric(24, 6) NOT NULL,
    net_flow       numeric(24, 6) NOT NULL,
    day_change     numeric(24, 6) NOT NULL,
    holdings       jsonb NOT NULL,
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portfolio_id, date)
);

-- One result per portfolio and window; `GET .../performance` serves the latest computed.
CREATE TABLE portfolio_performance (
    portfolio_id bigint NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    start_date   date NOT NULL,
    end_date     date NOT NULL,
    result       jsonb NOT NULL,
    computed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (portfolio_id, start_date, end_date)
);
CREATE INDEX portfolio_performance_latest ON portfolio_performance (portfolio_id, computed_at DESC);

-- task_id makes a redelivered report task overwrite its own row instead of adding another.
CREATE TABLE portfolio_reports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    portfolio_id bigint NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    task_id      text NOT NULL UNIQUE,
    format       text NOT NULL CHECK (format IN ('json', 'html')),
    start_date   date NOT NULL,
    end_date     date NOT NULL,
    body         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX portfolio_reports_portfolio ON portfolio_reports (portfolio_id, created_at DESC);
