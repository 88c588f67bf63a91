"""gsvlib: GSVNet (Lee, Chen, Peng, ICME 2021), guided spatially-varying convolution for fast video segmentation."""
from gsvlib.models import GSVNet, GSVNetConfig
from gsvlib.segmenter import VideoSegmenter

__version__ = "0.1.0"
__all__ = ["GSVNet", "GSVNetConfig", "VideoSegmenter", "__version__"]
