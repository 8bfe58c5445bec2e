"""Fused supernet operators (``torch.ops.goldnas``) and their plain-PyTorch references."""
from goldnas_fast.ops.mixed_sum import mixed_sum, mixed_sum_ref

__all__ = ["mixed_sum", "mixed_sum_ref"]
