"""`python -m service.cli`: the findash CLI."""

from service.cli.main import main

main()
