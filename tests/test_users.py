"""Users and API keys against a real Postgres."""

from __future__ import annotations

import uuid

import asyncpg

from service.core import users


class TestKeys:
    async def test_revoke_other_keys_keeps_only_the_newest(self, pool: asyncpg.Pool) -> None:
        """A user's older keys stop authenticating; the kept key and other users' keys work."""
        email = f"{uuid.uuid4().hex[:8]}@keys.test"
        async with pool.acquire() as db:
            first = await users.create_user(db, email=email)
            second = await users.create_user(db, email=email)
            stranger = await users.create_user(db, email=f"other-{email}")
            assert first.user_id == second.user_id
            revoked = await users.revoke_other_keys(
                db, user_id=second.user_id, keep_key_id=second.key_id
            )
            assert revoked == 1
            assert await users.authenticate(db, first.api_key) is None
            kept = await users.authenticate(db, second.api_key)
            assert kept is not None
            assert kept.key_id == second.key_id
            assert await users.authenticate(db, stranger.api_key) is not None

    async def test_keys_are_stored_hashed(self, pool: asyncpg.Pool) -> None:
        """The database holds a digest and an 8-character prefix, never the key."""
        async with pool.acquire() as db:
            issued = await users.create_user(db, email=f"{uuid.uuid4().hex[:8]}@keys.test")
            row = await db.fetchrow(
                "SELECT key_hash, prefix FROM api_keys WHERE id = $1", issued.key_id
            )
        assert row["key_hash"] == users.hash_api_key(issued.api_key)
        assert issued.api_key.encode() not in bytes(row["key_hash"])
        assert row["prefix"] == issued.api_key[:8]
