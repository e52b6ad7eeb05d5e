"""Statuses and the status files the archive system reads."""
