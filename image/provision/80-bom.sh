#!/bin/sh
# The bill of materials: /etc/ai-platform/bom.json (Packer also downloads it beside its manifest).
set -eu
python3 "$PAYLOAD/provision/write-bom.py" /etc/ai-platform/bom.json
