"""Fused GPU kernels for the batched evaluator (optional: need triton; tested on CPU with TRITON_INTERPRET=1)."""
