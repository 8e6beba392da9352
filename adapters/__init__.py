"""adapters: the I/O edges of eventbus — providers, submitters, sources and the simulator.

``adapters.providers`` holds one sans-I/O module per provider; the modules
beside it (``http``, ``submit``, ``websocket``, ``webhooks``, ``polling``) move
bytes and call them; ``adapters.simulator`` is the local stand-in for all four
providers.
"""

from __future__ import annotations

__all__: list[str] = []
