"""``python -m composer`` (and ``torchrun -m composer train ...``) runs the CLI."""

from composer.cli import main

main()
