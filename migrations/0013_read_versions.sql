-- Which transactions wrote a portfolio's snapshots or a symbol's daily prices: a row per key and
-- writing transaction, appended in that transaction by statement-level triggers. The version of
-- a polled read (service/api/polled_reads.py) is this set of rows, so it moves with every
-- committed write whatever order transactions commit in, and reading it costs a few index
-- entries rather than every row of a year's range.
--
-- A transaction only ever inserts its own rows (its id is in the key), so writers never wait on
-- each other here; there are no foreign keys, so no lock on the portfolio or asset is taken. The
-- weekly cleanup folds each key's rows into one new row (workers/maintenance/cleanup.py).
CREATE TABLE snapshot_writes (
    portfolio_id bigint NOT NULL,
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (portfolio_id, xid)
);
CREATE TABLE price_writes (
    symbol text NOT NULL,
    xid    xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (symbol, xid)
);

CREATE FUNCTION log_snapshot_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO snapshot_writes (portfolio_id)
        SELECT DISTINCT portfolio_id FROM new_rows ON CONFLICT DO NOTHING;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO snapshot_writes (portfolio_id)
        SELECT portfolio_id FROM old_rows UNION SELECT portfolio_id FROM new_rows
        ON CONFLICT DO NOTHING;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO snapshot_writes (portfolio_id)
        SELECT DISTINCT portfolio_id FROM old_rows ON CONFLICT DO NOTHING;
    ELSE  -- TRUNCATE
        INSERT INTO snapshot_writes (portfolio_id) SELECT id FROM portfolios ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION log_price_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO price_writes (symbol)
        SELECT DISTINCT symbol FROM new_rows ON CONFLICT DO NOTHING;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO price_writes (symbol)
        SELECT symbol FROM old_rows UNION SELECT symbol FROM new_rows ON CONFLICT DO NOTHING;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO price_writes (symbol)
        SELECT DISTINCT symbol FROM old_rows ON CONFLICT DO NOTHING;
    ELSE  -- TRUNCATE
        INSERT INTO price_writes (symbol) SELECT symbol FROM assets ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER snapshots_inserted AFTER INSERT ON portfolio_snapshots
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_snapshot_writes();
CREATE TRIGGER snapshots_updated AFTER UPDATE ON portfolio_snapshots
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_snapshot_writes();
CREATE TRIGGER snapshots_deleted AFTER DELETE ON portfolio_snapshots
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_snapshot_writes();
CREATE TRIGGER snapshots_truncated AFTER TRUNCATE ON portfolio_snapshots
    FOR EACH STATEMENT EXECUTE FUNCTION log_snapshot_writes();

CREATE TRIGGER prices_inserted AFTER INSERT ON daily_prices
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_price_writes();
CREATE TRIGGER prices_updated AFTER UPDATE ON daily_prices
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_price_writes();
CREATE TRIGGER prices_deleted AFTER DELETE ON daily_prices
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_price_writes();
CREATE TRIGGER prices_truncated AFTER TRUNCATE ON daily_prices
    FOR EACH STATEMENT EXECUTE FUNCTION log_price_writes();
