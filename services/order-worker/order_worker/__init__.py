"""The order-worker: settles the orders accepted while the database was out (their records in
the order table, woken by SQS, swept for lost wake-ups) with the API's order transaction."""
