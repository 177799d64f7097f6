"""Ready entries for services.custom: services an owner of this platform commonly adds.

Each template is a config entry as `builder service add` writes it, with facts from the upstream
files at the pinned tag (cited per template): the image, the port it listens on, what must persist,
its health endpoint and the tools its image has to call it, and the settings that keep it offline
and on the platform's own LiteLLM. A template is a starting point: the entry it writes is the
owner's to change, and it is validated like any other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    name: str
    summary: str
    sources: tuple[str, ...]  # where each fact was read
    entry: dict  # the services.custom.NAME entry; NAME in a value becomes the service's name


TEMPLATES = {
    template.name: template
    for template in (
        Template(
            name="open-webui",
            summary="Open WebUI: a chat UI on the platform's LiteLLM (model auto), its own TLS port",
            sources=(
                "image: open-webui/helm-charts tag open-webui-16.0.0 charts/open-webui/Chart.yaml appVersion 0.11.0 "
                "and its templates pulling ghcr.io/open-webui/open-webui:<appVersion>",
                "port 8080, /app/backend/data, runs as root, HEALTHCHECK curl .../health, curl in the image: "
                "open-webui/open-webui Dockerfile (as the code index holds it: not tied to the tag) and the helm "
                "chart's containerPort 8080 and /health probes",
                "OFFLINE_MODE, HF_HUB_OFFLINE, *_AUTO_UPDATE, ENABLE_OLLAMA_API, OPENAI_API_BASE_URL/KEY, "
                "RAG_EMBEDDING_ENGINE, RAG_OPENAI_API_BASE_URL/KEY, WEBUI_SECRET_KEY: open-webui/docs "
                "docs/reference/env-configuration.mdx @1eea3847 (documents v0.11.0)",
                "no sub-path support (frontend asks for /api, /_app from the root): open-webui issues #6649, #1162",
            ),
            entry={
                "title": "Open WebUI",
                "image": "ghcr.io/open-webui/open-webui:0.11.0",
                "port": 8080,
                "edge_port": 8447,
                "environment": {
                    "WEBUI_SECRET_KEY": "${generated:WEBUI_SECRET_KEY}",
                    "OFFLINE_MODE": "true",
                    "HF_HUB_OFFLINE": "1",
                    "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false",
                    "RAG_RERANKING_MODEL_AUTO_UPDATE": "false",
                    "WHISPER_MODEL_AUTO_UPDATE": "false",
                    "ENABLE_OLLAMA_API": "false",
                    "OPENAI_API_BASE_URL": "http://litellm:4000/v1",
                    "OPENAI_API_KEY": "${litellm:key}",
                    # Its built-in embedder is a download away offline: LiteLLM's `embed` (baked) instead.
                    "RAG_EMBEDDING_ENGINE": "openai",
                    "RAG_EMBEDDING_MODEL": "embed",
                    "RAG_OPENAI_API_BASE_URL": "http://litellm:4000/v1",
                    "RAG_OPENAI_API_KEY": "${litellm:key}",
                },
                "volumes": {"/mnt/data/NAME": "/app/backend/data"},
                "user": "0:0",
                "healthcheck": ["CMD", "curl", "--silent", "--fail", "http://127.0.0.1:8080/health"],
                "needs": ["litellm"],
                "memory_mib": 1024,
            },
        ),
        Template(
            name="searxng",
            summary="SearXNG: private metasearch (only the engines the instance can reach), its own TLS port",
            sources=(
                "image docker.io/searxng/searxng:2026.3.25-541c6c3cb: searxng/searxng container/.env.example",
                "port 8080 (GRANIAN_PORT), /etc/searxng and /var/cache/searxng, user searxng 977: "
                "searxng/searxng container/dist.dockerfile and searxng/base Dockerfile",
                "GET /healthz, wget in the image (searxng/base SEARXNG_PACKAGES), SEARXNG_SECRET (it refuses to "
                "start on the template's key): searxng/searxng searx/webapp.py, searx/settings_defaults.py",
            ),
            entry={
                "title": "SearXNG",
                "image": "docker.io/searxng/searxng:2026.3.25-541c6c3cb",
                "port": 8080,
                "edge_port": 8448,
                "environment": {"SEARXNG_SECRET": "${generated:SECRET}", "SEARXNG_LIMITER": "false"},
                "volumes": {"/mnt/data/NAME/config": "/etc/searxng", "/mnt/data/NAME/cache": "/var/cache/searxng"},
                "user": "977:977",
                "healthcheck": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"],
                "memory_mib": 256,
            },
        ),
    )
}


def entry_for(template: Template, name: str) -> dict:
    """The template's entry for a service called `name` (its folders are /mnt/data/NAME)."""

    def named(value):
        if isinstance(value, dict):
            return {named(key): named(item) for key, item in value.items()}
        if isinstance(value, list):
            return [named(item) for item in value]
        return value.replace("/mnt/data/NAME", f"/mnt/data/{name}") if isinstance(value, str) else value

    return named(template.entry)
