"""A variant on disk: save, load and verify bundles, their weight codecs, the TorchScript runtime and int8 Linear.

``from compression.bundle import load_bundle`` is the public way to run a variant (model cards show it).
"""

from compression.bundle.folder import Bundle, load_bundle, save_bundle

__all__ = ["Bundle", "load_bundle", "save_bundle"]
