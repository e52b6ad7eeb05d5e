"""The sandbox network: the real HTTP APIs, on loopback, with fictional organisations.

The daemon never imports this package; only `efm-gateway sandbox` and the tests do.
"""

from gateway.sandbox.catalogue import SandboxCatalogue, SandboxOrganisation, catalogue_from_dict
from gateway.sandbox.server import SandboxContext, SandboxServer, serve_forever

__all__ = [
    "SandboxCatalogue",
    "SandboxContext",
    "SandboxOrganisation",
    "SandboxServer",
    "catalogue_from_dict",
    "serve_forever",
]
