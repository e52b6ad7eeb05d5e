"""Operations: heartbeats and the watchdog, metrics and /healthz, disk floors, start-up checks, reload,
and the operator page (page.py), served on the daemon's operations address."""
