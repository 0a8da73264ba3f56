"""A local emulator of Close CRM's REST API (email activities, event log), standard library only.

In process::

    emulator = Emulator(EmulatorConfig(rate=0))
    emulator.generate(2000, seed=1)
    with EmulatorServer(emulator) as srv:
        ...  # srv.base_url is http://127.0.0.1:PORT/api/v1

From a shell: ``python -m close_emulator --port 8765 --emails 50000 --seed 1``.
"""

from .emulator import Emulator, EmulatorConfig
from .testing import AdminClient, EmulatorProcess, EmulatorServer

__all__ = ["AdminClient", "Emulator", "EmulatorConfig", "EmulatorProcess", "EmulatorServer"]
