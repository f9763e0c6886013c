"""pushmanifest: push multi-architecture manifest lists to any container registry."""

__version__ = "0.1.0"
