"""A thin client for the OpenCode server's HTTP API: one pure core, sync and async shells."""

from .core import Endpoint, Operation
from .shells import AsyncOpencodeClient, OpencodeClient, http_options

__all__ = ["AsyncOpencodeClient", "Endpoint", "OpencodeClient", "Operation", "http_options"]
