-- An Idempotency-Key is bound to the request it came with (the IETF draft and Stripe): the
-- order id is made from the key AND the body, and the key is unique, so the same key with
-- another body can never replay the first order nor place a second one.
ALTER TABLE orders ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX orders_idempotency_key ON orders (idempotency_key);
