"""Operations: heartbeats and the watchdog, metrics, /healthz and /readyz, disk floors, start-up checks,
reload, and the operator page (page.py), each served on its own listener behind a Host check."""
