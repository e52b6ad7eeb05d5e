"""Routing: the service-registry client (signed answers, cache) and the choice of channel."""

from gateway.routing.registry import (
    InfoRecord,
    ReceiverNotFound,
    RegistryAnswer,
    ServiceRecord,
    ServiceRegistryClient,
)
from gateway.routing.route import Route, choose_route

__all__ = [
    "InfoRecord",
    "ReceiverNotFound",
    "RegistryAnswer",
    "Route",
    "ServiceRecord",
    "ServiceRegistryClient",
    "choose_route",
]
