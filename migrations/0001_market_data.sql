-- Assets and their daily bars. `close` is split-adjusted and not dividend-adjusted;
-- `adj_close` is split- and dividend-adjusted (docs/MARKET_DATA.md).
CREATE TABLE assets (
    symbol      text PRIMARY KEY,
    name        text,
    exchange    text,
    currency    text,
    asset_type  text,
    sector      text,
    industry    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE daily_prices (
    symbol      text NOT NULL REFERENCES assets (symbol) ON DELETE CASCADE,
    date        date NOT NULL,
    open        numeric(20, 6),
    high        numeric(20, 6),
    low         numeric(20, 6),
    close       numeric(20, 6) NOT NULL,
    adj_close   numeric(20, 6),
    volume      bigint,
    source      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, date)
);
