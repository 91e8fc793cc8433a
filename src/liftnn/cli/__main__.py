"""`python -m liftnn.cli`: the same command line as the `liftnn` script."""

from liftnn.cli import main

main()
