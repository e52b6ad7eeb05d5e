"""Inbound: download, verify and unpack received messages into the inbox; follow their pick-up."""
