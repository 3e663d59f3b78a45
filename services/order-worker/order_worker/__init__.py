"""The order-worker: drains the SQS order buffer into the database."""
