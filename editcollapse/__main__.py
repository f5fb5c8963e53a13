"""`python -m editcollapse` runs the CLI."""

from editcollapse.cli import main

main()
