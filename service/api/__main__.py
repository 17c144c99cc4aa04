"""`python -m service.api`: the API on uvicorn."""

from service.api.serve import main

main()
