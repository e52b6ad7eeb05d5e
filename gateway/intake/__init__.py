"""Intake: find complete drops in the outbox, claim each exactly once, validate, journal."""
