-- The order transaction in one round trip (it was five: begin, claim, decrement, status,
-- commit, each a network wait while the product's row lock is held; on a hot product the
-- lock is what everyone queues for). Same steps, same order, same outcome as before:
-- 1. claim the id and the Idempotency-Key (a concurrent attempt with either waits here for
--    this one, then finds the row: a replay, never a second decrement);
-- 2. the one conditional UPDATE that can never oversell;
-- 3. the order's outcome, with a reason when it is rejected.
-- A row found under another id is the key's first order (another body): the caller refuses
-- the request. The statement is its own transaction, committed before the answer.
-- A lock wait is bounded inside the function (a session sitting on the product's row, a slow
-- DDL): it fails the statement before anything commits, an honest "not applied", instead of
-- holding a pooled connection until the lock goes. The commit after it is not bounded (the
-- setting is the function's own, restored before the statement commits).
CREATE FUNCTION place_order(p_id uuid, p_product_id integer, p_quantity integer, p_key text)
RETURNS orders
LANGUAGE plpgsql
SET lock_timeout = '2s'
AS $$
DECLARE
    placed orders;
BEGIN
    INSERT INTO orders (id, product_id, quantity, status, idempotency_key)
    VALUES (p_id, p_product_id, p_quantity, 'pending', p_key)
    ON CONFLICT DO NOTHING
    RETURNING * INTO placed;
    IF NOT FOUND THEN
        SELECT * INTO placed FROM orders
        WHERE id = p_id OR idempotency_key = p_key
        ORDER BY id = p_id DESC LIMIT 1;
        RETURN placed;
    END IF;

    UPDATE products SET stock = stock - p_quantity, updated_at = now()
    WHERE id = p_product_id AND stock >= p_quantity;
    IF FOUND THEN
        UPDATE orders SET status = 'confirmed', updated_at = now()
        WHERE id = p_id RETURNING * INTO placed;
    ELSE
        UPDATE orders SET status = 'rejected', updated_at = now(),
            reason = CASE WHEN EXISTS (SELECT 1 FROM products WHERE id = p_product_id)
                          THEN 'insufficient stock' ELSE 'unknown product' END
        WHERE id = p_id RETURNING * INTO placed;
    END IF;
    RETURN placed;
END
$$;

-- Only the orders role may call it (it runs with the caller's rights: no more than theirs).
REVOKE ALL ON FUNCTION place_order(uuid, integer, integer, text) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_orders') THEN
        GRANT EXECUTE ON FUNCTION place_order(uuid, integer, integer, text) TO shop_orders;
    END IF;
END
$$;
