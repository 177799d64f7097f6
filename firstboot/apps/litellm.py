"""LiteLLM's config.yaml: the baked local models, and Claude/GPT only when their keys exist."""

from __future__ import annotations

import json
from collections.abc import Sequence

from firstboot.apps.base import File, Instance, Rendered, StackConfigError
from firstboot.instance_config import StackSettings

SERVICE = "litellm"
INDEX = ("LiteLLM", "/litellm/")
CONFIG = "litellm/config.yaml"
# `auto` is the route every app uses: LiteLLM's complexity router (rule-based, no network, no
# licence; LiteLLM >= 1.81.14, router_strategy/complexity_router) scores the last user message and
# hands SIMPLE/MEDIUM to `local`, COMPLEX/REASONING to `smart` (seed: simple → local model,
# complex → Claude/GPT). `local` and `smart` stay for apps that choose: with a cloud key each falls
# back to the other; without one both are the same Ollama, and a fallback would only wait on it twice.
AUTO_ROUTE = "auto"
LOCAL_ROUTE = "local"
SMART_ROUTE = "smart"
TIERS = ("simple", "medium", "complex", "reasoning")
DEFAULT_TIERS = {"simple": LOCAL_ROUTE, "medium": LOCAL_ROUTE, "complex": SMART_ROUTE, "reasoning": SMART_ROUTE}
EMBED_ROUTE = "embed"  # the baked embedding model (AnythingLLM's embedder)
OLLAMA_API_BASE = "http://ollama:11434"
CLOUD_PROVIDERS = {  # provider -> (LiteLLM prefix, variable holding the key, route name)
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY", "claude"),
    "openai": ("openai", "OPENAI_API_KEY", "gpt"),
}
# A cloud endpoint that accepts and never answers must not hold a request for minutes (with
# timeout 300 and two retries it held `smart` for 904 s): its first token within 20 s, all of it
# within 45 s, no retry inside its SDK (the router's own retries count), then the fallback. Keys
# of litellm_params and router_settings in LiteLLM 1.80.11 and 1.83.10 (router.py, _get_timeout).
CLOUD_TIMEOUTS = {"timeout": 45, "stream_timeout": 20, "max_retries": 0}
# Ollama on a CPU loads a model for a minute or more before its first token.
LOCAL_TIMEOUTS = {"timeout": 300, "stream_timeout": 180}
# Retry what may pass a second later; never a refused key or a request that timed out already.
RETRY_POLICY = {
    "AuthenticationErrorRetries": 0,
    "BadRequestErrorRetries": 0,
    "ContentPolicyViolationErrorRetries": 0,
    "TimeoutErrorRetries": 0,
    "RateLimitErrorRetries": 1,
    "InternalServerErrorRetries": 1,
}


def litellm_config(settings: StackSettings, providers_with_keys: Sequence[str]) -> dict:
    """LiteLLM's config: local models by name and as `local`, cloud models only when their key exists."""
    if not settings.ollama_models:
        raise StackConfigError("ollama.models is empty: LiteLLM needs at least one local model for `local`")
    models = []
    for model in settings.ollama_models:
        params = {"model": f"ollama_chat/{model}", "api_base": OLLAMA_API_BASE, **LOCAL_TIMEOUTS}
        models.append({"model_name": model, "litellm_params": params})
    # The first model is the everyday one; the last (the biggest, by convention of the list) stands in
    # for `smart` when no cloud key exists.
    models.append({"model_name": LOCAL_ROUTE, "litellm_params": models[0]["litellm_params"]})
    cloud_routes = []
    for provider in ("anthropic", "openai"):
        if provider not in providers_with_keys:
            continue
        prefix, variable, route = CLOUD_PROVIDERS[provider]
        params = {
            "model": f"{prefix}/{settings.cloud_models[provider]}",
            "api_key": f"os.environ/{variable}",
            **CLOUD_TIMEOUTS,
        }
        models.append({"model_name": route, "litellm_params": params})
        cloud_routes.append((route, params))
    if cloud_routes:
        models.append({"model_name": SMART_ROUTE, "litellm_params": cloud_routes[0][1]})
        # LiteLLM looks fallbacks up by the name asked for (`auto`), not by the tier's route it chose
        # (router.py async_function_with_fallbacks): a failing cloud tier gives way to `local`, and a
        # failing local tier reaches the cloud through `local`'s own fallback.
        fallbacks = [
            {LOCAL_ROUTE: [SMART_ROUTE]},
            {SMART_ROUTE: [route for route, _ in cloud_routes[1:]] + [LOCAL_ROUTE]},
            {AUTO_ROUTE: [LOCAL_ROUTE]},
        ]
    else:
        models.append(
            {"model_name": SMART_ROUTE, "litellm_params": models[len(settings.ollama_models) - 1]["litellm_params"]}
        )
        fallbacks = []
    models.append(auto_route(settings.auto_tiers))
    # LiteLLM's ollama/ provider embeds through Ollama's /api/embed (litellm 1.80.11,
    # llms/ollama/completion/handler.py); mode tells its health checks this is no chat model.
    embed = {"model": f"ollama/{settings.embedding_model}", "api_base": OLLAMA_API_BASE}
    models.append({"model_name": EMBED_ROUTE, "litellm_params": embed, "model_info": {"mode": "embedding"}})
    return {
        "model_list": models,
        "router_settings": {
            "num_retries": 1,
            "retry_policy": RETRY_POLICY,
            "timeout": LOCAL_TIMEOUTS["timeout"],
            "allowed_fails": 3,
            "cooldown_time": 60,
            "fallbacks": fallbacks,
            "max_fallbacks": 2,
        },
        "litellm_settings": {"request_timeout": 600, "drop_params": True, "telemetry": False},
        "general_settings": {
            "master_key": "os.environ/LITELLM_MASTER_KEY",
            "database_url": "os.environ/DATABASE_URL",
        },
    }


def auto_route(tiers: dict[str, str]) -> dict:
    """The `auto` model: LiteLLM's complexity router over routes of this config (keys of
    complexity_router_config in LiteLLM 1.83.10, router_strategy/complexity_router/config.py). The
    scoring keeps LiteLLM's defaults; a request with no user text goes to the medium tier."""
    params = {
        "model": "auto_router/complexity_router",
        "complexity_router_config": {"tiers": {tier.upper(): tiers[tier] for tier in TIERS}},
        "complexity_router_default_model": tiers["medium"],
    }
    return {"model_name": AUTO_ROUTE, "litellm_params": params}


def routing_table(settings: StackSettings) -> str:
    """The README's table of routes, from the same settings the config is rendered from."""
    cloud = {"anthropic": "claude", "openai": "gpt"}
    smart_with_key = ", else ".join(
        f"`{route}` ({settings.cloud_models[provider]})" for provider, route in cloud.items()
    )
    biggest = settings.ollama_models[-1]

    def target(route: str, with_key: bool) -> str:
        if route == LOCAL_ROUTE:
            return f"`local` ({settings.ollama_models[0]})"
        if route == SMART_ROUTE:
            return f"`smart`: {smart_with_key}" if with_key else f"`smart` ({biggest})"
        return f"`{route}`"

    rows = ["| `auto` sends | with a cloud key | without one |", "| --- | --- | --- |"]
    for tier in TIERS:
        route = settings.auto_tiers[tier]
        rows.append(f"| {tier.upper()} | {target(route, True)} | {target(route, False)} |")
    return "\n".join(rows) + "\n"


def render(instance: Instance) -> Rendered:
    text = json.dumps(litellm_config(instance.settings, instance.providers_with_keys), indent=2) + "\n"
    return Rendered([File(CONFIG, text)])
