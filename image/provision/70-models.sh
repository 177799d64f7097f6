#!/bin/sh
# The Ollama models on disk in Ollama's own layout, every blob's digest verified.
set -eu
python3 "$PAYLOAD/provision/fetch-models.py" "$PAYLOAD/models.txt" /opt/ai-platform/models
install -m 0644 "$PAYLOAD/models.txt" /opt/ai-platform/models.txt
