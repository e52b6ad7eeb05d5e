"""Operators' commands on the journal: listings, and retry, cancel and release of one message."""
