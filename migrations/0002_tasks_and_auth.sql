-- Reserved: task registry, users and API keys (issue 3). Filled in by that work before it lands.
SELECT 1;
