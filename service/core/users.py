"""Users and their API keys: created and revoked by operators, checked on every request.

A key is `fdk_` + 43 url-safe characters (256 random bits). Only its SHA-256 is stored:
with that much entropy a slow password hash adds nothing. Every change that can invalidate
a key (revocation, deletion, a user's email or admin flag) also bumps one counter in the
same transaction (migration 0011), which is what lets the API cache keys in memory and still
refuse a revoked key on the very next request (service/api/key_cache.py).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import asyncpg

KEY_PREFIX = "fdk_"


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated caller."""

    id: int
    email: str
    is_admin: bool
    key_id: int


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key: the only time its secret is visible."""

    user_id: int
    key_id: int
    api_key: str


def new_api_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(api_key: str) -> bytes:
    """The stored form of a key."""
    return hashlib.sha256(api_key.encode()).digest()


async def create_user(
    connection: asyncpg.Connection, *, email: str, is_admin: bool = False
) -> IssuedKey:
    """Create a user (or reuse the one with this email) and issue it a new key."""
    async with connection.transaction():
        user_id: int = await connection.fetchval(
            """
            INSERT INTO users (email, is_admin) VALUES ($1, $2)
            ON CONFLICT (email) DO UPDATE SET is_admin = users.is_admin OR excluded.is_admin
            RETURNING id
            """,
            email.strip().lower(),
            is_admin,
        )
        return await issue_key(connection, user_id=user_id)


async def issue_key(connection: asyncpg.Connection, *, user_id: int) -> IssuedKey:
    """Issue another key for an existing user."""
    api_key = new_api_key()
    key_id: int = await connection.fetchval(
        "INSERT INTO api_keys (user_id, key_hash, prefix) VALUES ($1, $2, $3) RETURNING id",
        user_id,
        hash_api_key(api_key),
        api_key[:8],
    )
    return IssuedKey(user_id=user_id, key_id=key_id, api_key=api_key)


async def revoke_key(connection: asyncpg.Connection, *, key_id: int) -> bool:
    """Revoke a key; False if no such active key."""
    status: str = await connection.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL", key_id
    )
    return status.endswith(" 1")


async def revoke_other_keys(
    connection: asyncpg.Connection, *, user_id: int, keep_key_id: int
) -> int:
    """Revoke every active key of `user_id` except `keep_key_id`; returns how many."""
    status: str = await connection.execute(
        "UPDATE api_keys SET revoked_at = now() "
        "WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL",
        user_id,
        keep_key_id,
    )
    return int(status.rsplit(" ", 1)[-1])


def looks_like_api_key(api_key: str) -> bool:
    """Whether `api_key` could be one of ours (checked before any lookup)."""
    return api_key.startswith(KEY_PREFIX) and len(api_key) <= 128


async def authenticate(connection: asyncpg.Connection, api_key: str) -> User | None:
    """The user owning an active `api_key`, or None."""
    if not looks_like_api_key(api_key):
        return None
    user, _ = await lookup_key(connection, key_hash=hash_api_key(api_key))
    return user


async def lookup_key(connection: asyncpg.Connection, *, key_hash: bytes) -> tuple[User | None, int]:
    """The user owning the active key stored as `key_hash` (or None), and the key
    generation that answer is valid at, both read in one snapshot."""
    row = await connection.fetchrow(
        """
        SELECT g.generation, u.id, u.email, u.is_admin, k.id AS key_id
        FROM api_key_generation g
        LEFT JOIN (api_keys k JOIN users u ON u.id = k.user_id)
            ON k.key_hash = $1 AND k.revoked_at IS NULL
        """,
        key_hash,
    )
    generation: int = row["generation"]
    if row["id"] is None:
        return None, generation
    user = User(id=row["id"], email=row["email"], is_admin=row["is_admin"], key_id=row["key_id"])
    return user, generation


async def key_generation(connection: asyncpg.Connection | asyncpg.Pool) -> int:
    """The current key generation: it changes whenever any key or user may have become
    invalid (migration 0011)."""
    generation: int = await connection.fetchval("SELECT generation FROM api_key_generation")
    return generation
