"""One module per CLI verb; `jaxcoder.cli` dispatches to them."""
