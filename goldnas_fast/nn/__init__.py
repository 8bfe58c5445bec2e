"""Supernet building blocks on the fused ops: mixed operations and pruning-aware DAG cells."""
from goldnas_fast.nn.cell import BACKENDS, DAGCell, Edge
from goldnas_fast.nn.mixed_op import MixedOp
from goldnas_fast.nn.primitives import AvgPool3x3, FusedPrimitive, Identity, MaxPool3x3, fused_kind

__all__ = ["BACKENDS", "DAGCell", "Edge", "MixedOp", "FusedPrimitive", "Identity", "AvgPool3x3", "MaxPool3x3",
           "fused_kind"]
