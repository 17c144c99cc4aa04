"""Where every Redis connection points: one reading of the three URL schemes findash takes.

- `redis://[user:password@]host:port/db`: plain TCP (ACL user and password in the URL).
- `rediss://…`: TLS, always with the `REDIS_SSL_*` options, so neither redis-py nor kombu
  ever falls back to an unverified connection. Verification is off only with an explicit
  `REDIS_SSL_CERT_REQS=none`.
- `sentinel://[user:password@]host:26379/db;sentinel://host2:26379/db`: the sentinels to
  ask for `REDIS_SENTINEL_MASTER`; user, password and db (from the first URL) are the
  master's, as in Celery. The sentinels and the master are reached in plaintext.

`check_redis_url` is the start-up validation (Settings calls it for every Redis URL);
`redis_endpoint` gives clients (service/core/redis_clients.py) and Celery
(service/core/celery_config.py) the same reading.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
import structlog

if TYPE_CHECKING:
    from service.core.settings import Settings

CertReqs = Literal["required", "optional", "none"]

SCHEMES = ("redis", "rediss", "sentinel")
SENTINEL_PORT = 26379
SENTINEL_SEPARATOR = ";"
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}

log = structlog.get_logger(__name__)


class RedisTls(msgspec.Struct, frozen=True, kw_only=True):
    """TLS options for a `rediss://` connection (the `REDIS_SSL_*` settings)."""

    cert_reqs: CertReqs
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    def options(self) -> dict[str, Any]:
        """redis-py's `ssl_*` keyword arguments; kombu's `broker_use_ssl` and Celery's
        `redis_backend_use_ssl` take the same dict."""
        return {
            "ssl_cert_reqs": _CERT_REQS[self.cert_reqs],
            "ssl_ca_certs": self.ca_certs,
            "ssl_certfile": self.certfile,
            "ssl_keyfile": self.keyfile,
            # redis-py refuses CERT_NONE with hostname checking on.
            "ssl_check_hostname": self.cert_reqs != "none",
        }


class RedisEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    """A Redis URL as read for a client: TLS options for `rediss://`, the sentinels and the
    master's name and credentials for `sentinel://`."""

    url: str
    tls: RedisTls | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = ""

    @property
    def scheme(self) -> str:
        """`redis`, `rediss` or `sentinel`."""
        return urlsplit(self.url).scheme

    def master_options(self) -> dict[str, Any]:
        """The master's db, ACL user and password, from the first sentinel URL."""
        first = urlsplit(self.url.split(SENTINEL_SEPARATOR, 1)[0])
        path = first.path.strip("/")
        return {
            "db": int(path) if path else 0,
            "username": unquote(first.username) if first.username else None,
            "password": unquote(first.password) if first.password else None,
        }


def sentinel_addresses(url: str) -> tuple[tuple[str, int], ...]:
    """The (host, port) of each sentinel in a `;`-separated `sentinel://` URL list."""
    addresses = []
    for part in url.split(SENTINEL_SEPARATOR):
        split = urlsplit(part.strip())
        if split.scheme != "sentinel" or not split.hostname:
            raise ValueError("every ';'-separated part must be a sentinel://host:port URL")
        addresses.append((split.hostname, split.port or SENTINEL_PORT))
    return tuple(addresses)


def check_redis_url(name: str, url: str, *, settings: Settings) -> None:
    """Refuse (ValueError naming `name` and the setting to fix) a Redis URL findash could
    not use safely: an unknown scheme, TLS options in the query, a `rediss://` URL without
    a CA to verify against, or a `sentinel://` URL without a master name."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"{name} must be a redis://, rediss:// or sentinel:// URL")
    for part in url.split(SENTINEL_SEPARATOR):
        if any(key.startswith("ssl") for key, _ in parse_qsl(urlsplit(part).query)):
            raise ValueError(
                f"{name}: TLS options do not go in the URL; use REDIS_SSL_CA_CERTS, "
                "REDIS_SSL_CERTFILE, REDIS_SSL_KEYFILE and REDIS_SSL_CERT_REQS"
            )
    if scheme == "sentinel":
        try:
            sentinel_addresses(url)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if not settings.redis_sentinel_master:
            raise ValueError(
                f"{name} is a sentinel:// URL: set REDIS_SENTINEL_MASTER to the name of the "
                "master the sentinels monitor"
            )
    verified = settings.redis_ssl_cert_reqs != "none"
    if scheme == "rediss" and verified and not settings.redis_ssl_ca_certs:
        raise ValueError(
            f"{name} is a rediss:// URL but REDIS_SSL_CA_CERTS is not set: set it to the "
            "CA file that signed the Redis server's certificate (certificates are "
            "verified), or set REDIS_SSL_CERT_REQS=none to turn verification off"
        )


def check_tls_files(settings: Settings) -> None:
    """Refuse TLS file settings that name no readable file, or a key without a certificate."""
    for name in ("REDIS_SSL_CA_CERTS", "REDIS_SSL_CERTFILE", "REDIS_SSL_KEYFILE"):
        path = getattr(settings, name.lower())
        if path and not Path(path).is_file():
            raise ValueError(f"{name}: no such file: {path}")
    if settings.redis_ssl_keyfile and not settings.redis_ssl_certfile:
        raise ValueError("REDIS_SSL_KEYFILE is set without REDIS_SSL_CERTFILE")


def redis_endpoint(settings: Settings, url: str | None = None) -> RedisEndpoint:
    """How to reach `url` (default `REDIS_URL`) under `settings`."""
    url = settings.redis_url if url is None else url
    scheme = urlsplit(url).scheme
    if scheme == "sentinel":
        return RedisEndpoint(
            url=url, sentinels=sentinel_addresses(url), master_name=settings.redis_sentinel_master
        )
    if scheme == "rediss":
        return RedisEndpoint(url=url, tls=tls_options(settings))
    return RedisEndpoint(url=url)


def tls_options(settings: Settings) -> RedisTls:
    """The `REDIS_SSL_*` settings; warns once per process when verification is off."""
    if settings.redis_ssl_cert_reqs == "none":
        _warn_unverified()
    return RedisTls(
        cert_reqs=settings.redis_ssl_cert_reqs,
        ca_certs=settings.redis_ssl_ca_certs or None,
        certfile=settings.redis_ssl_certfile or None,
        keyfile=settings.redis_ssl_keyfile or None,
    )


@functools.cache
def _warn_unverified() -> None:
    log.warning(
        "redis tls certificates are not verified",
        setting="REDIS_SSL_CERT_REQS=none",
        risk="anyone on the network path can impersonate Redis",
    )
