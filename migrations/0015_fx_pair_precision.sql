-- FX pairs quote small numbers: JPYUSD=X is about 0.0067, KRWUSD=X 0.0007, IDRUSD=X 0.00006.
-- At six decimal places they kept 4, 3 and 2 significant digits: every conversion through them
-- was off by up to 0.0075 %, 0.07 % and 0.8 %. The price columns lose their fixed scale and each
-- value keeps the scale it is written with: six places for prices, ten for pairs
-- (workers/market_data/store.py). numeric(20, 6) to numeric is binary compatible, so Postgres
-- rewrites neither the table nor its indexes, and stored values (and how they print) stay as
-- they are.
ALTER TABLE daily_prices
    ALTER COLUMN open TYPE numeric,
    ALTER COLUMN high TYPE numeric,
    ALTER COLUMN low TYPE numeric,
    ALTER COLUMN close TYPE numeric,
    ALTER COLUMN adj_close TYPE numeric;
