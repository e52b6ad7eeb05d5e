"""efm-gateway: a file-drop eFormidling integration point."""

__version__ = "0.1.0"
