"""What each app of the platform renders per instance, one module per app (in the way of cloud-init's
cc_*.py: one module, its settings and its files together).

The stack files in the image are the same on every instance; what differs is rendered here at every
boot, from the instance config and the values the agent already holds, and written only when it
changed (firstboot/stack_config.py). Each module has:

- SERVICE: the service whose being enabled turns the module on (None: always, as for the edge);
- INDEX: its entry on the edge's index page, (title, path under the main port) with None as the
  path for an app served on a port of its own, or None for no entry;
- render(instance) -> Rendered: the files, as paths under /etc/ai-platform, and any warnings.

Adding or fixing an app touches its module here and its stack folder, nothing else.

JSON is written where YAML is read (JSON is YAML), so the standard library is enough.
"""

from __future__ import annotations

from firstboot.apps import anythingllm, clawdbot, dify, edge, litellm, n8n, ollama, signal_api

# In the index's order; the edge last, as it renders the index of the others.
MODULES = (ollama, litellm, clawdbot, anythingllm, dify, n8n, signal_api, edge)
