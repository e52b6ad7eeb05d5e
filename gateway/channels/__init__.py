"""Channel adapters: one per transport (DPO, DPF, DPV, DPI). Each speaks its real HTTP API;
the sandbox serves the same APIs on loopback, so only URLs and keys differ."""
