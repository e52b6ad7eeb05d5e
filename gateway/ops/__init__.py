"""Operations: heartbeats and the watchdog, metrics and /healthz, disk floors, start-up checks, reload."""
