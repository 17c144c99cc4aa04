"""`python -m service.dev`: the development stack (just dev)."""

from service.dev.supervisor import main

main()
