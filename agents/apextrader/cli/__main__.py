"""`python -m apextrader.cli` = `apex`."""

from apextrader.cli.main import main

main()
