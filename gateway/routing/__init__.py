"""Routing: the service-registry client (signed answers, cache) and the choice of channel."""

from gateway.routing.registry import (
    InfoRecord,
    ReceiverNotFound,
    RegistryAnswer,
    ServiceRecord,
    ServiceRegistryClient,
)
from gateway.routing.resolver import Resolver, route_for
from gateway.routing.route import Route, choose_route

__all__ = [
    "InfoRecord",
    "ReceiverNotFound",
    "RegistryAnswer",
    "Resolver",
    "Route",
    "ServiceRecord",
    "ServiceRegistryClient",
    "choose_route",
    "route_for",
]
