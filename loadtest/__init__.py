"""Load for the shop: Locust runs (locustfile.py) and the experiments' traffic generator."""
