-- Every write to a portfolio's transactions also updates the portfolio's row, in the same
-- transaction, so that row's version (`xmin`) changes with its ledger. A holdings poll
-- (service/api/holdings_reads.py) checks that one row version instead of every transaction's.
-- Statement-level, so an import of a thousand rows updates each portfolio once.
ALTER TABLE portfolios ADD COLUMN ledger_version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION touch_portfolio_ledgers() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE portfolios SET ledger_version = ledger_version + 1
        WHERE id IN (SELECT portfolio_id FROM new_rows);
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE portfolios SET ledger_version = ledger_version + 1
        WHERE id IN (SELECT portfolio_id FROM old_rows UNION SELECT portfolio_id FROM new_rows);
    ELSIF TG_OP = 'DELETE' THEN
        UPDATE portfolios SET ledger_version = ledger_version + 1
        WHERE id IN (SELECT portfolio_id FROM old_rows);
    ELSE  -- TRUNCATE
        UPDATE portfolios SET ledger_version = ledger_version + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER transactions_inserted AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION touch_portfolio_ledgers();
CREATE TRIGGER transactions_updated AFTER UPDATE ON transactions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION touch_portfolio_ledgers();
CREATE TRIGGER transactions_deleted AFTER DELETE ON transactions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION touch_portfolio_ledgers();
CREATE TRIGGER transactions_truncated AFTER TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION touch_portfolio_ledgers();
