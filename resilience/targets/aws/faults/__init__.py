"""The aws nemesis' faults: one module per fault of the registry (each registers itself), and
`refused.py`, the faults it cannot inject and why (see targets/fault_module.py)."""

from ...fault_module import FaultTable

FAULTS = FaultTable("aws", __name__)
