"""Fused supernet operators (``torch.ops.goldnas``) and their plain-PyTorch references."""
from goldnas_fast.ops.mixed_sum import mixed_sum, mixed_sum_ref
from goldnas_fast.ops.node_sum import Kind, node_sum, node_sum_ref
from goldnas_fast.ops.pooling import avg_pool_3x3

__all__ = ["Kind", "avg_pool_3x3", "mixed_sum", "mixed_sum_ref", "node_sum", "node_sum_ref"]
