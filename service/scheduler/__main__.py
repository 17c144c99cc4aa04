"""`python -m service.scheduler`: a scheduler replica."""

from service.scheduler.main import main

main()
