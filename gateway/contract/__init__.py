"""The on-disk contracts with the archive system: the drop sidecar and the status file."""
