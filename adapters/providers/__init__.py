"""The four providers, one sans-I/O module each: requests to build, answers to read, no I/O.

``PROVIDERS`` maps the provider name to its class.
"""

from adapters.providers.base import Provider
from adapters.providers.datananas import Datananas
from adapters.providers.insideview import InsideView
from adapters.providers.mautic import Mautic
from adapters.providers.pronto import Pronto

PROVIDERS: dict[str, type[Provider]] = {
    "insideview": InsideView,
    "mautic": Mautic,
    "datananas": Datananas,
    "pronto": Pronto,
}

__all__ = ["PROVIDERS", "Datananas", "InsideView", "Mautic", "Pronto", "Provider"]
