"""Channel adapters: one per transport (DPO, DPF, DPV, DPI). Each speaks its real HTTP API;
the sandbox serves the same APIs on loopback, so only URLs and keys differ.

Importing any channel module loads the registry first, which registers every built-in channel's business types
with the SBD's formats: an SBD of a channel's type reads the same whichever module was imported first.
"""

from gateway.channels import registry as registry
