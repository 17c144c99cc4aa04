-- The first date a symbol's provider has history for, learned when a fetch that started
-- earlier returned its first bar later: the incremental planner then counts history from
-- that date as complete instead of asking again for what does not exist (docs/MARKET_DATA.md).
ALTER TABLE fetch_state ADD COLUMN first_available_date date;
