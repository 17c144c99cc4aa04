# One image for every findash process; compose.yaml picks the command.
FROM python:3.12-slim
COPY --from=ghcr.io/astral-sh/uv:latest /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy PYTHONUNBUFFERED=1
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY service service
COPY workers workers
COPY migrations migrations
RUN uv sync --frozen --no-dev
RUN useradd --system findash
USER findash
ENV PATH="/app/.venv/bin:$PATH"
CMD ["python", "-m", "service.api"]
