"""The market-hours scheduler: pure planning, job table, leader election, fire ledger, process."""
