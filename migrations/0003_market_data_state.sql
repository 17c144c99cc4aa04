-- Reserved: quotes, dividends, splits, fetch state (issue 4). Filled in by that work before it lands.
SELECT 1;
