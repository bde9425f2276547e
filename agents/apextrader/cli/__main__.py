from apextrader.cli.main import main

main()
