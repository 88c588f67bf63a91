"""The parts of GSVNet, one module each: resnet, swiftnet, bisenet (keyframe nets N), flow (O), warp (eq. 1),
gsv (guided spatially-varying convolution, eq. 2), gsvnet (the composition and the streaming segmenter)."""
from gsvlib.models.bisenet import BiSeNet
from gsvlib.models.flow import FlowLight, FlowNetS
from gsvlib.models.layers import downscale8
from gsvlib.models.gsv import GuidedSpatiallyVaryingConv, edge_map, ideal_delay_kernels, ideal_delay_offsets
from gsvlib.models.gsvnet import GSVNet, GSVNetConfig, Propagation, Step, VideoSegmenter, full_resolution_labels
from gsvlib.models.resnet import ResNet18, load_torchvision_weights, normalize
from gsvlib.models.swiftnet import SwiftNet
from gsvlib.models.warp import out_of_frame, warp

__all__ = ["BiSeNet", "FlowLight", "FlowNetS", "GuidedSpatiallyVaryingConv", "edge_map", "ideal_delay_kernels",
           "ideal_delay_offsets", "GSVNet", "GSVNetConfig", "Propagation", "Step", "VideoSegmenter", "downscale8",
           "full_resolution_labels",
           "ResNet18", "load_torchvision_weights", "normalize", "SwiftNet", "out_of_frame", "warp"]
