"""DPF: messages to and from municipalities over KS SvarUt (send) and SvarInn (receive)."""
