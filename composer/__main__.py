"""``python -m composer`` (and ``torchrun -m composer train ...``) runs the CLI."""

from composer.cli.main import main

main()
