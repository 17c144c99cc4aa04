"""DATABASE_URL's `sslmode` reaches asyncpg: the session's Postgres serves no TLS, so
`require` is refused and `disable` / `prefer` connect."""

from __future__ import annotations

import pytest

from service.core.database import create_pool
from service.core.settings import Settings

pytestmark = pytest.mark.timeout(60)


def _settings(base_env: dict[str, str], mode: str) -> Settings:
    return Settings.from_env(
        {**base_env, "DATABASE_URL": f"{base_env['DATABASE_URL']}?sslmode={mode}"}
    )


class TestSslmode:
    @pytest.mark.parametrize("mode", ["disable", "prefer"])
    async def test_modes_that_allow_plaintext_connect(
        self, base_env: dict[str, str], mode: str
    ) -> None:
        """With sslmode=disable or prefer the pool connects to a Postgres without TLS."""
        pool = await create_pool(_settings(base_env, mode), application_name="findash-sslmode")
        try:
            assert await pool.fetchval("SELECT 1") == 1
        finally:
            await pool.close()

    @pytest.mark.parametrize(
        ("mode", "refusal"),
        [
            ("require", "rejected SSL upgrade"),
            ("verify-full", "root certificate file .* does not exist"),
        ],
    )
    async def test_modes_that_need_tls_are_refused(
        self, base_env: dict[str, str], mode: str, refusal: str
    ) -> None:
        """sslmode=require is refused by a Postgres without TLS, and verify-full without a
        root certificate by asyncpg itself: the query is not stripped on its way to asyncpg."""
        with pytest.raises(Exception, match=refusal):
            await create_pool(_settings(base_env, mode), application_name="findash-sslmode")
