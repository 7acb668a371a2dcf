"""`python -m audit` runs the `container-lock` command."""

from .cli import main

main()
