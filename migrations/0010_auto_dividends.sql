-- Dividends that arrive by themselves (issue 13): a portfolio opts in with `auto_dividends`;
-- each stored dividend of a held symbol then becomes a DIVIDEND transaction whose
-- `generated_ex_date` names the dividend it came from (NULL: recorded by the user). At most
-- one generated transaction per portfolio, symbol and ex-date. `dividends.pay_date` is the
-- payment date when the provider reports one (Polygon does, Yahoo's chart does not).
ALTER TABLE portfolios ADD COLUMN auto_dividends boolean NOT NULL DEFAULT false;

ALTER TABLE transactions
    ADD COLUMN generated_ex_date date,
    ADD CHECK (generated_ex_date IS NULL OR type = 'DIVIDEND');
CREATE UNIQUE INDEX transactions_generated_dividend
    ON transactions (portfolio_id, symbol, generated_ex_date)
    WHERE generated_ex_date IS NOT NULL;

ALTER TABLE dividends ADD COLUMN pay_date date CHECK (pay_date >= ex_date);
