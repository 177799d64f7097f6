"""ai-platform-builder: bake and launch a private, self-hosted AI platform."""

__version__ = "0.1.0"
