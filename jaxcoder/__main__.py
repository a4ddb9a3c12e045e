"""`python -m jaxcoder <verb> ...` is the same as the `jaxcoder` console script."""

from jaxcoder.cli import main

main()
