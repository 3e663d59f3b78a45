"""The local lab's parts, as processes on this machine: PostgreSQL (primary and synchronous
replica), PgBouncer (the RDS Proxy twin), the latency proxy, moto's server and the shop's AWS
resources on it, and ``lab.Lab``, which starts, checks and stops them all. The user names,
database names and the latency proxy are shared with docker compose."""
