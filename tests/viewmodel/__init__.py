"""The view against its model, without the kernel: ``model`` (what the view should
answer), ``mountedview`` (a mount held open across Hypothesis's rules), ``faulty`` (a
driver that fails some calls), ``machine`` (one mount, with and without faults) and
``twomounts`` (two mounts of one store)."""

from .machine import FaultyViewMachine, ViewMachine
from .mountedview import TrioThread
from .twomounts import TwoMountsMachine

__all__ = ["FaultyViewMachine", "TrioThread", "TwoMountsMachine", "ViewMachine"]
