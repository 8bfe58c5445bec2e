"""Supernet building blocks on the fused ops: mixed operations and pruning-aware DAG cells."""
from goldnas_fast.nn.cell import BACKENDS, DAGCell, Edge
from goldnas_fast.nn.mixed_op import MixedOp
from goldnas_fast.nn.lean_batch_norm import output_saving_batch_norm, saves_output
from goldnas_fast.nn.primitives import AvgPool3x3, FusedPrimitive, Identity, MaxPool3x3, fused_kind
from goldnas_fast.nn.relu_body import relu_body, run_body

__all__ = ["BACKENDS", "DAGCell", "Edge", "MixedOp", "FusedPrimitive", "Identity", "AvgPool3x3", "MaxPool3x3",
           "fused_kind", "relu_body", "run_body", "output_saving_batch_norm", "saves_output"]
