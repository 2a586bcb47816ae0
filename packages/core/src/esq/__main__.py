"""``python -m esq`` is the ``esq`` command."""

from esq.cli.main import main

main()
