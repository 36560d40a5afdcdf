"""``python -m gzoo ...`` is the ``gzoo`` command (also what ``torchrun -m gzoo`` runs)."""

from .cli import main

main()
