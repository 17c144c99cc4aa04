"""`findash`, the command line (`python -m service.cli`): submit and follow tasks over the
API, administer users, portfolios and the schedule."""

from service.cli.main import main

__all__ = ["main"]
