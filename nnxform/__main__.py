"""``python -m nnxform``: the same as the ``nnxform`` command."""

from .cli import main

main()
