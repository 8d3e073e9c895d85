"""The pulseboard server: authenticated, sequence-numbered metric streams."""

__version__ = "0.1.0"
