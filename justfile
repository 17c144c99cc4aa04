# findash developer recipes. `uv run just dev` starts everything; `uv run just test` checks it.
# Recipes read .dev/env (written by `just dev`), so a second terminal reaches the same stack;
# variables already set in your environment win.
set dotenv-load
set dotenv-path := ".dev/env"
set shell := ["bash", "-euo", "pipefail", "-c"]

python := "uv run --frozen python"

# List the recipes.
default:
    @just --list

# Install the locked dependencies into .venv.
setup:
    uv sync --frozen

# Run the whole system: embedded Postgres/Redis (unless URLs are set), exchange, API, worker, scheduler.
dev:
    {{python}} -m service.dev

# Run the test suite (starts its own Postgres, Redis, exchange, workers and API).
test *args:
    uv run --frozen pytest {{args}}

# Lint, type-check and check the import layering ([tool.importlinter] in pyproject.toml).
lint:
    uv run --frozen ruff check .
    uv run --frozen ruff format --check .
    uv run --frozen mypy
    uv run --frozen lint-imports

# Format the code and apply safe lint fixes.
fmt:
    uv run --frozen ruff format .
    uv run --frozen ruff check --fix .

# Apply pending migrations to DATABASE_URL.
migrate:
    {{python}} -m service.cli.migrate

# Serve the API (API_HOST:API_PORT).
api:
    {{python}} -m service.api

# Run a worker on the given queues (default: all) with the given concurrency;
# `just worker scheduled 1` is the worker reserved for scheduled fires (docs/SCHEDULER.md).
worker queues="scheduled,market_data,analytics" concurrency="2":
    {{python}} -m celery -A workers.worker -q worker -P prefork -c {{concurrency}} -Q {{queues}} -E

# Run a scheduler replica.
scheduler:
    {{python}} -m service.scheduler

# Run Flower on loopback (basic auth from FLOWER_BASIC_AUTH=user:password). Flower reads
# FLOWER_* itself, so the password stays off the command line; it is read-only unless
# FLOWER_READ_ONLY=false (it can run any task otherwise: docs/OPERATIONS.md).
flower port="5555":
    @test -n "${FLOWER_BASIC_AUTH:-}" || { echo "set FLOWER_BASIC_AUTH=user:password" >&2; exit 2; }
    FLOWER_READ_ONLY="${FLOWER_READ_ONLY:-true}" {{python}} -m celery -A workers.worker flower --address=127.0.0.1 --port={{port}}

# Run the simulated exchange alone.
exchange:
    {{python}} -m workers.market_data.simulated_exchange

# Run the benchmarks and print their results (see docs/BENCHMARKS.md).
bench *args:
    {{python}} -m bench {{args}}

# Soak the whole stack on loopback under mixed load on a fast clock, then print a summary:
# `just soak` (3 minutes), `just soak --minutes 10` (the most). Not part of `just test`.
soak *args:
    {{python}} -m bench.soak {{args}}

# Export the OpenAPI document to openapi.json.
openapi:
    {{python}} -c "import json; from service.api.app import create_app; from service.core.settings import Settings; print(json.dumps(create_app(Settings.from_env()).openapi_schema.to_schema(), indent=2))" > openapi.json
    @echo "wrote openapi.json"

# Create a user and print its API key once (add --admin for admin rights).
user email *flags:
    {{python}} -m service.cli users create --email {{email}} {{flags}}

# Follow a task until it ends.
follow task_id:
    {{python}} -m service.cli status {{task_id}} --wait

# Fetch a year of daily bars for symbols and follow the task: `just fetch AAPL MSFT`.
fetch +symbols:
    {{python}} -m service.cli fetch-market-data {{ prepend("-s ", symbols) }} --wait

# List your unfinished tasks.
active:
    {{python}} -m service.cli list-active

# Show the scheduler's jobs, next fires and last fires.
schedule:
    {{python}} -m service.cli schedule list

# A deeper schemathesis run than CI's (every check, every phase incl. stateful links).
fuzz examples="100" seconds="900":
    FUZZ_MAX_EXAMPLES={{examples}} FUZZ_MAX_SECONDS={{seconds}} FUZZ_OUTPUT=schemathesis.out uv run --frozen pytest -q -p no:cacheprovider tests/test_schemathesis.py
