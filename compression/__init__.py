"""BERT Compression Lab: distill, prune and quantize BERT-family text classifiers and measure the result.

Importing this package is cheap: it loads no model, reads no weights and touches no network. Heavy libraries
(torch, transformers, datasets) are imported inside the functions that need them.
"""

import os as _os
import sys as _sys

# Python 3.14 adds a standard-library package named `compression` (PEP 784: compression.zstd, .gzip, ...), which this
# package shadows. Make its submodules importable through us so stdlib users (gzip, tarfile, ...) keep working.
if _sys.version_info >= (3, 14):
    import sysconfig as _sysconfig

    _std = _os.path.join(_sysconfig.get_paths()["stdlib"], "compression")
    if _os.path.isdir(_std) and _std not in __path__:
        __path__.append(_std)

from compression.core import __version__  # noqa: E402
from compression.core.config import DataConfig, Recipe, TeacherConfig, load_recipe
from compression.core.errors import LabError

__all__ = ["DataConfig", "Recipe", "TeacherConfig", "load_recipe", "LabError", "__version__"]
