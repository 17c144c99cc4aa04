"""The HTTP face: the Litestar app (`python -m service.api` serves it). docs/API.md."""

from service.api.app import create_app

__all__ = ["create_app"]
