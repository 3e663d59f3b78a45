-- Final means final. An order is decided once, in this table, and never changes afterwards:
-- confirmed, rejected, or failed (the worker gave up on it). "failed" used to live only in the
-- order-status table, where a later copy of the same order (a redelivered message, a retry
-- with the same Idempotency-Key) could still commit it here and flip failed -> confirmed. Now
-- it is a row here too, so place_order finds it and replays it like any other decision.
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('confirmed', 'rejected', 'failed', 'pending'));

-- The worker's last word on an order it could not apply (an error that is not an outage,
-- again and again): claim the id and the key as place_order does, as failed with the reason.
-- An order already decided (a copy committed meanwhile) keeps its decision, which is returned;
-- a row found under another id is the key's first order (the caller treats it as a refusal).
CREATE FUNCTION fail_order(p_id uuid, p_product_id integer, p_quantity integer, p_key text,
                           p_reason text)
RETURNS orders
LANGUAGE plpgsql
SET lock_timeout = '2s'
AS $$
DECLARE
    decided orders;
BEGIN
    INSERT INTO orders (id, product_id, quantity, status, reason, idempotency_key)
    VALUES (p_id, p_product_id, p_quantity, 'failed', p_reason, p_key)
    ON CONFLICT DO NOTHING
    RETURNING * INTO decided;
    IF NOT FOUND THEN
        SELECT * INTO decided FROM orders
        WHERE id = p_id OR idempotency_key = p_key
        ORDER BY id = p_id DESC LIMIT 1;
    END IF;
    RETURN decided;
END
$$;

-- The only writers of orders and of the stock are these functions, which never change a
-- decided row: they run with their owner's rights (SECURITY DEFINER, a fixed search_path),
-- and the orders role keeps only SELECT on the tables and EXECUTE on the functions. Whatever
-- runs as shop_orders (the orders service, the worker), a decision cannot be rewritten.
DO $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY['place_order(uuid, integer, integer, text)',
                              'fail_order(uuid, integer, integer, text, text)'] LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = %I, pg_temp',
                       fn, current_schema());
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_orders') THEN
        GRANT EXECUTE ON FUNCTION fail_order(uuid, integer, integer, text, text) TO shop_orders;
        REVOKE INSERT, UPDATE ON orders FROM shop_orders;
        REVOKE UPDATE (stock, updated_at) ON products FROM shop_orders;
    END IF;
END
$$;
