-- A market_closures row with `closes_at` set is an unscheduled early close at that local
-- (New York) time instead of a full-day closure.
ALTER TABLE market_closures ADD COLUMN closes_at time;
