"""Clarion: a self-hosted relay that gets public information to the public on every channel."""

__version__ = "0.1.0"
