"""The Signal REST API: behind the owner's login on the main port; the index links its device-linking QR code."""

from __future__ import annotations

from firstboot.apps.base import Instance, Rendered

SERVICE = "signal_api"
INDEX = ("Signal: link a phone (owner only)", "/signal/v1/qrcodelink?device_name=ai-platform")


def render(instance: Instance) -> Rendered:
    return Rendered([])
