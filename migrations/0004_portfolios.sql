-- Reserved: portfolios, transactions, snapshots, performance, reports (issue 5). Filled in by that work before it lands.
SELECT 1;
