"""The pulseboard server: authenticated, sequence-numbered metric streams."""

from pulseboard import __version__  # the one version string: widget/pulseboard/__init__.py

__all__ = ["__version__"]
