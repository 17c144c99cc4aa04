-- Which transactions wrote anything a holdings valuation reads besides the portfolio's own row
-- (daily prices, FX rates among them, latest quotes, splits, assets and the calendar's
-- overrides): one row per writing transaction, appended in that transaction by statement-level
-- triggers that see at least one row change (or a TRUNCATE).
--
-- A kept holdings answer (service/api/holdings_reads.py) remembers the oldest transaction still
-- running when its inputs were read (`pg_snapshot_xmin`) and the rows from there on it saw. Any
-- transaction committing later has an id at least that old, so while the same query finds the
-- same rows and the portfolio's row is unchanged, no input changed: a poll checks one row and
-- the top of one index instead of every input of every held symbol. When a write moved it, the
-- poll falls back to the exact per-input version, which also tells whether it touched this
-- portfolio's inputs at all.
--
-- Writers never wait on each other here: a transaction only inserts its own id. The weekly
-- cleanup deletes rows older than every running transaction and adds its own, so every kept
-- answer is checked exactly once more (workers/maintenance/cleanup.py).
CREATE TABLE valuation_input_writes (
    xid xid8 PRIMARY KEY DEFAULT pg_current_xact_id()
);

CREATE FUNCTION log_valuation_input_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO valuation_input_writes DEFAULT VALUES ON CONFLICT DO NOTHING;
    ELSIF EXISTS (SELECT FROM changed_rows) THEN
        INSERT INTO valuation_input_writes DEFAULT VALUES ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    input text;
BEGIN
    FOREACH input IN ARRAY ARRAY['daily_prices', 'latest_quotes', 'splits', 'assets',
                                 'market_closures'] LOOP
        EXECUTE format('CREATE TRIGGER valuation_input_inserted AFTER INSERT ON %I '
                       'REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT '
                       'EXECUTE FUNCTION log_valuation_input_write()', input);
        EXECUTE format('CREATE TRIGGER valuation_input_updated AFTER UPDATE ON %I '
                       'REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT '
                       'EXECUTE FUNCTION log_valuation_input_write()', input);
        EXECUTE format('CREATE TRIGGER valuation_input_deleted AFTER DELETE ON %I '
                       'REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT '
                       'EXECUTE FUNCTION log_valuation_input_write()', input);
        EXECUTE format('CREATE TRIGGER valuation_input_truncated AFTER TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION log_valuation_input_write()', input);
    END LOOP;
END
$$;
