"""The parts of GSVNet, one module each: resnet, swiftnet, bisenet (keyframe nets N), flow (O), warp (eq. 1),
gsv (guided spatially-varying convolution, eq. 2), gsvnet (their composition and the registries of nets), output (the
full-resolution labels of every frame), conventions (the official code's variants of these parts, one switch each).
Pure modules and tensor functions: no files, no devices, no streaming (that is :mod:`gsvlib.segmenter`)."""
from gsvlib.models.bisenet import BiSeNet
from gsvlib.models.flow import FlowLight, FlowNetS
from gsvlib.models.layers import downscale8
from gsvlib.models.gsv import GuidedSpatiallyVaryingConv, edge_map, ideal_delay_kernels, ideal_delay_offsets
from gsvlib.models.gsvnet import FLOW_NETS, KEYFRAME_NETS, GSVNet, GSVNetConfig, Propagation
from gsvlib.models.output import full_resolution_labels, label_dtype
from gsvlib.models.resnet import ResNet18, normalize
from gsvlib.models.swiftnet import SwiftNet
from gsvlib.models.warp import out_of_frame, warp

__all__ = ["BiSeNet", "FlowLight", "FlowNetS", "GuidedSpatiallyVaryingConv", "edge_map", "ideal_delay_kernels",
           "ideal_delay_offsets", "FLOW_NETS", "KEYFRAME_NETS", "GSVNet", "GSVNetConfig", "Propagation", "downscale8",
           "full_resolution_labels", "label_dtype", "ResNet18", "normalize", "SwiftNet", "out_of_frame", "warp"]
