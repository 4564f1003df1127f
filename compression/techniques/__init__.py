"""The built-in techniques, one file per method, each with one ``register(...)``; shared helpers for pruning
(``pruning.py``) and quantization (``quantization.py``).

The registry itself lives in :mod:`compression.core.registry`; what a plugin needs is re-exported here, so a
method of your own starts with ``from compression.techniques import Technique, register``.
"""

from compression.core.registry import MAYBE, NO, PAYS, Built, LabChoice, Technique, Validation, register

__all__ = ["Built", "LabChoice", "Technique", "Validation", "register", "PAYS", "NO", "MAYBE"]
