-- Reserved: scheduler epochs, fire ledger, market closures (issue 6). Filled in by that work before it lands.
SELECT 1;
