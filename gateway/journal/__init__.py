"""The journal: every message's state, committed before any side effect."""
