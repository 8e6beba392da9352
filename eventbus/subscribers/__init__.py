"""Subscribers: small configured callables that consume the event stream.

A subscriber is anything callable with one event (sync or async); the bus runs
it in its own task (``bus.on(subscriber, name=...)``).
"""
