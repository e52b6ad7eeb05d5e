"""Delivery rules shared by everything that calls a channel (sends, status messages, listings, polls):
how long a failed call waits (back-off) and when a channel pauses for everyone (its circuit)."""
