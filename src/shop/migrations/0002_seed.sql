-- The ten products of the reference lab. Products 2 and 3 are the ones the experiments order.
INSERT INTO products (id, name, price, stock) VALUES
    (1, 'Wireless Keyboard', 49.99, 100),
    (2, 'USB-C Hub', 34.99, 150),
    (3, 'Mechanical Keyboard', 89.99, 50),
    (4, 'Wireless Mouse', 24.99, 200),
    (5, '27-inch Monitor', 279.00, 40),
    (6, 'Laptop Stand', 39.99, 120),
    (7, 'HD Webcam', 59.99, 80),
    (8, 'Noise-Cancelling Headphones', 149.99, 60),
    (9, 'Portable SSD 1TB', 99.99, 90),
    (10, 'Desk Lamp', 29.99, 110)
ON CONFLICT (id) DO NOTHING;
