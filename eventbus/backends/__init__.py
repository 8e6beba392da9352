"""Buses that reach beyond one process: :mod:`eventbus.backends.redis` (Redis Streams).

Each backend is imported on its own (``from eventbus.backends.redis import
RedisBus``) so that its client library is needed only by whoever uses it.
"""

__all__ = ["REDIS_SCHEMES"]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""How a RedisBus URL begins (``eventbus tail`` tells a URL from a journal file by it)."""
