"""Pallas kernels (flash attention for GPU and TPU), importable as `kernels` from the installed package.

Kernels register themselves with `jaxcoder.model.attention_ops.register_attention` so the model can
select them with `model.attention_impl`.
"""
