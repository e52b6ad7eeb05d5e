"""The daemon's periodic jobs (APScheduler 3)."""
