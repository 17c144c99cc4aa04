-- The currency a transaction's price, amount and fee are in (NULL: the portfolio's base
-- currency), the rate to the base currency it was booked at, and a free-text note.
-- Minor units (GBp, ZAc) differ from their majors only in case, so the check keeps case.
ALTER TABLE transactions
    ADD COLUMN currency text CHECK (currency ~ '^([A-Z]{3}|GBp|ZAc)$'),
    ADD COLUMN fx_rate  numeric(24, 10) CHECK (fx_rate > 0),
    ADD COLUMN note     text CHECK (length(note) <= 1000);
