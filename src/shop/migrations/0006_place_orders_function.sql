-- Group commit: the orders one process has waiting for the same product go in one call, one
-- transaction, one commit (one wait for the synchronous standby, one turn at the product's
-- row lock) instead of one each. Each order is still placed by place_order (migration 0005),
-- in arrival order, so the semantics are that function's, order by order: an id or an
-- Idempotency-Key already claimed (by an earlier order of the same batch too) is a replay or
-- a refusal, never a second decrement; the stock never goes below zero. One row per order, in
-- the order given. Any error fails the whole call and nothing of it commits. The lock wait is
-- bounded as in 0005 (the first order waits for the row, the others already hold it).
CREATE FUNCTION place_orders(p_ids uuid[], p_product_ids integer[], p_quantities integer[],
                             p_keys text[])
RETURNS SETOF orders
LANGUAGE plpgsql
SET lock_timeout = '2s'
AS $$
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_ids, 1), 0) LOOP
        RETURN NEXT place_order(p_ids[i], p_product_ids[i], p_quantities[i], p_keys[i]);
    END LOOP;
END
$$;

-- Only the orders role may call it (with the caller's rights, place_order's included).
REVOKE ALL ON FUNCTION place_orders(uuid[], integer[], integer[], text[]) FROM PUBLIC;
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_orders') THEN
        GRANT EXECUTE ON FUNCTION place_orders(uuid[], integer[], integer[], text[])
            TO shop_orders;
    END IF;
END
$$;
