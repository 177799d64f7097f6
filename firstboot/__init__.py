"""The agent that turns a fresh instance into a running platform.

Runs on the instance under Ubuntu 22.04's Python 3.10: nothing newer, and only the
standard library where it can.
"""

__version__ = "0.1.0"
