"""The real LiteLLM (1.83.10) with the platform's rendered routes: `auto` keeps simple questions on
the local model and sends complex ones to the cloud; when the cloud model refuses, fails or never
answers, the local model answers instead (tests/llm_providers.py plays the
providers). Which deployment answered is asserted; how long it took is printed here and measured
by bench/litellm_fallbacks.py, never asserted."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from llm_providers import CASES, CLOUD_ANSWER, LOCAL_ANSWER, fallback_config, start_providers, start_proxy
from real_images import LITELLM, imported

from firstboot.apps import litellm
from firstboot.instance_config import StackSettings

pytestmark = pytest.mark.skipif(
    shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0,
    reason="needs a running dockerd (scripts/setup starts one)",
)
SETTINGS = StackSettings(ollama_models=("llama3.2:3b", "deepseek-r1:7b"))
# The hung provider's timeout, in place of the rendered 45 s (CI paid it twice): the fallback is the
# same, its cost is bench/litellm_fallbacks.py's to measure.
HANG_TIMEOUT = 5


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    providers = start_providers()
    rendered = litellm.litellm_config(SETTINGS, ["openai"])
    config = fallback_config(rendered, providers, hang_timeout=HANG_TIMEOUT)
    running = start_proxy(imported(LITELLM), config, tmp_path_factory.mktemp("litellm"))
    try:
        yield running
    finally:
        running.stop()
        providers.close()


def answer(response) -> str:
    assert response.status_code == 200, response.text[:1000]
    return response.json()["choices"][0]["message"]["content"]


# Scored by LiteLLM's complexity router (router_strategy/complexity_router, default weights):
# greetings and short factual questions are SIMPLE; code, technical terms and explicit
# step-by-step reasoning are COMPLEX and REASONING.
SIMPLE_PROMPTS = ["hi", "What is the capital of France?"]
COMPLEX_PROMPTS = {
    "complex": "Write an async Python class that reads rows from a Postgres database through a REST api, "
    "caches them, and tune its performance and latency under load.",
    "reasoning": "Think step by step and explain your reasoning: which of two loans costs less over ten years?",
}


@pytest.mark.parametrize("prompt", SIMPLE_PROMPTS)
def test_auto_keeps_a_simple_question_on_the_local_model(proxy, prompt):
    response, _seconds = proxy.ask("auto", prompt)
    assert answer(response) == LOCAL_ANSWER


@pytest.mark.parametrize("tier", list(COMPLEX_PROMPTS))
def test_auto_sends_a_complex_request_to_the_cloud_model(proxy, tier):
    response, _seconds = proxy.ask("auto", COMPLEX_PROMPTS[tier])
    assert answer(response) == CLOUD_ANSWER


@pytest.mark.parametrize("case", ["refused", "401", "hang"])
def test_when_the_cloud_tier_fails_auto_is_answered_by_the_local_model(proxy, case):
    response, seconds = proxy.ask(f"auto-{case}", COMPLEX_PROMPTS["complex"])
    try:
        assert answer(response) == LOCAL_ANSWER
    except AssertionError:
        print(proxy.logs()[-3000:])
        raise
    print(f"auto, complex request, provider {case}: answered by the local model after {seconds:.1f} s")


def test_the_cloud_route_answers_when_its_provider_does(proxy):
    response, _seconds = proxy.ask("smart")
    assert answer(response) == CLOUD_ANSWER


@pytest.mark.parametrize("case", list(CASES))
def test_a_failing_cloud_provider_gives_way_to_the_local_model(proxy, case):
    response, seconds = proxy.ask(f"smart-{case}")
    try:
        assert answer(response) == LOCAL_ANSWER
    except AssertionError:
        print(proxy.logs()[-3000:])
        raise
    print(f"smart, provider {case}: answered by the local model after {seconds:.1f} s")


def test_without_a_cloud_key_local_and_smart_do_not_fall_back_into_each_other(tmp_path):
    """Both are the same Ollama: a hung Ollama gets one wait, not one per route."""
    rendered = litellm.litellm_config(SETTINGS, [])
    assert rendered["router_settings"]["fallbacks"] == []
    providers = start_providers()
    config = {**rendered, "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"}}
    for entry in config["model_list"]:
        entry["litellm_params"]["api_base"] = providers.base("/500").removesuffix("/v1")
    running = start_proxy(imported(LITELLM), config, tmp_path)
    try:
        response, _seconds = running.ask("smart")
        assert response.status_code >= 400
        # `smart` once and its one retry; a fallback to `local` would ask the same Ollama again.
        assert 1 <= providers.hits.count("500") <= 2, providers.hits
    finally:
        running.stop()
        providers.close()
