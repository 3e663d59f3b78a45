-- The shop's two tables. Stock can never go negative: the CHECK is the last line of defence
-- behind the conditional UPDATE in shop.orders.place_order.
CREATE TABLE products (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    price       numeric(10, 2) NOT NULL CHECK (price >= 0),
    stock       integer NOT NULL CHECK (stock >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The order id is made by the caller before the first attempt, so a retried or redelivered
-- order finds its own row instead of making a second one. product_id has no foreign key on
-- purpose: an order for an unknown product is recorded as rejected, not refused by the schema.
CREATE TABLE orders (
    id          uuid PRIMARY KEY,
    product_id  integer NOT NULL,
    quantity    integer NOT NULL CHECK (quantity > 0),
    status      text NOT NULL CHECK (status IN ('confirmed', 'rejected', 'pending')),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_product_status ON orders (product_id, status);
