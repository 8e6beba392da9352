"""A local stand-in for InsideView, Mautic, Datananas and Pronto, faithful to ``providers.md``.

One Starlette app serves all four under prefixes (``/insideview``, ``/mautic``,
``/datananas``, ``/pronto``) on one port::

    async with run_simulator(SimulatorConfig(item_time=0.0001)) as sim:
        sim.urls["pronto"]          # http://127.0.0.1:PORT/pronto/api/v2
        sim.clock.advance(3600)     # expire every token

See docs/simulator.md for credentials, outcome rules and faults.
"""

from adapters.simulator.config import Clock, Credentials, Faults, SimulatorConfig, Throttle, parse_fault
from adapters.simulator.server import Simulator, run_simulator, simulator

__all__ = [
    "Clock",
    "Credentials",
    "Faults",
    "Simulator",
    "SimulatorConfig",
    "Throttle",
    "parse_fault",
    "run_simulator",
    "simulator",
]
