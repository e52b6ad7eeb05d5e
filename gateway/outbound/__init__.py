"""Outbound: route, pack and send accepted messages, journaling before each side effect."""
