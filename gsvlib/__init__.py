"""gsvlib: GSVNet (Lee, Chen, Peng, ICME 2021), guided spatially-varying convolution for fast video segmentation.

``GSVNet``, ``GSVNetConfig`` and ``VideoSegmenter`` are imported on first use, so that importing a module of the
package (the ``gsv`` command starting up) does not import torch before it can catch a Ctrl-C."""
import importlib

__version__ = "0.1.0"
__all__ = ["GSVNet", "GSVNetConfig", "VideoSegmenter", "__version__"]
_HOME = {"GSVNet": "gsvlib.models", "GSVNetConfig": "gsvlib.models", "VideoSegmenter": "gsvlib.segmenter"}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'gsvlib' has no attribute {name!r}")
