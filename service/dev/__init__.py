"""`just dev` (`python -m service.dev`) and the embedded Postgres and Redis it, the tests and
the benchmarks start when no URLs are set."""

from service.dev.embedded import EmbeddedPostgres, EmbeddedRedis, free_port

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "free_port"]
