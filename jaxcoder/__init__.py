"""jaxcoder: pretrain, evaluate and export code LLMs in JAX."""

__version__ = "0.1.0"
