"""The API's pool without the reset query still returns connections outside a transaction."""

from __future__ import annotations

import msgspec

from service.core.database import create_pool
from service.core.settings import Settings


class TestStatelessPool:
    async def test_open_transaction_rolled_back_on_release(self, settings: Settings) -> None:
        """A connection released mid-transaction comes back idle, its writes undone."""
        one = msgspec.structs.replace(settings, database_pool_min=1, database_pool_max=1)
        pool = await create_pool(one, application_name="findash-tests", stateless_sessions=True)
        try:
            async with pool.acquire() as connection:
                await connection.execute("CREATE TEMP TABLE IF NOT EXISTS scratch (n int)")
                await connection.execute("BEGIN")
                await connection.execute("INSERT INTO scratch VALUES (1)")
            async with pool.acquire() as connection:
                assert not connection.is_in_transaction()
                assert await connection.fetchval("SELECT count(*) FROM scratch") == 0
        finally:
            await pool.close()
