"""The lowest layer: errors, atomic files, texts, typed configs, the technique registry, digests and hardware
facts. Only the standard library (and, lazily, yaml) is imported here; every other layer may import it."""

__version__ = "0.1.0"
