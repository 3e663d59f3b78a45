-- Least privilege: the services never run as the owner of the tables. The orders service and
-- the order-worker (shop_orders) record orders and take stock; the catalog (shop_catalog) only
-- reads. Deployments create the two login roles with their passwords (the lab, compose's
-- init, `python -m shop.migrate` with SHOP_ROLE_SECRETS on AWS); where they are missing and
-- the owner may create roles, they are created here without a password.
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['shop_orders', 'shop_catalog'] LOOP
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', role_name);
            EXCEPTION WHEN insufficient_privilege THEN
                RAISE NOTICE 'role % is missing and cannot be created here: grants skipped',
                    role_name;
            END;
        END IF;
    END LOOP;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_orders') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO shop_orders', current_schema());
        GRANT SELECT, INSERT, UPDATE ON orders TO shop_orders;
        GRANT SELECT ON products, schema_migrations TO shop_orders;
        GRANT UPDATE (stock, updated_at) ON products TO shop_orders;
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_catalog') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO shop_catalog', current_schema());
        GRANT SELECT ON products, schema_migrations TO shop_catalog;
    END IF;
END
$$;
