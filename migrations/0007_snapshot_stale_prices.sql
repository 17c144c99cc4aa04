-- Which holdings a snapshot valued at a price older than its date (the close could not be
-- fetched): symbol -> date of the price used. Never silent; rewritten when the close
-- arrives (docs/PORTFOLIOS.md).
ALTER TABLE portfolio_snapshots ADD COLUMN stale_prices jsonb NOT NULL DEFAULT '{}';
CREATE INDEX portfolio_snapshots_stale ON portfolio_snapshots USING gin (stale_prices)
    WHERE stale_prices <> '{}';
