"""Fused supernet operators (``torch.ops.goldnas``) and their plain-PyTorch references."""
from goldnas_fast.ops.mixed_sum import mixed_sum, mixed_sum_ref
from goldnas_fast.ops.node_sum import Kind, node_sum, node_sum_ref

__all__ = ["Kind", "mixed_sum", "mixed_sum_ref", "node_sum", "node_sum_ref"]
