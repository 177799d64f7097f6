"""How long a request to `smart` takes to be answered when its cloud provider fails, per way of
failing, on the real LiteLLM with the platform's rendered routes (tests/llm_providers.py plays the
providers on loopback; the local model's stand-in answers at once, or after 3 s with --slow-ollama).

Run: .venv/bin/python bench/litellm_fallbacks.py [--runs N] [--slow-ollama]
Prints, per case, the median and the range of the seconds until the answer, and who answered.
Targets (#14): under 60 s for the endpoint that never answers, under 5 s for the others.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from llm_providers import CASES, CLOUD_ANSWER, LOCAL_ANSWER, fallback_config, start_providers, start_proxy  # noqa: E402
from real_images import LITELLM, imported  # noqa: E402

from firstboot.apps import litellm  # noqa: E402
from firstboot.instance_config import StackSettings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slow-ollama", action="store_true", help="the local stand-in answers after 3 s")
    options = parser.parse_args()
    rendered = litellm.litellm_config(StackSettings(ollama_models=("llama3.2:3b", "deepseek-r1:7b")), ["openai"])
    providers = start_providers()
    ollama = "/slow-ollama" if options.slow_ollama else "/ollama"
    with tempfile.TemporaryDirectory() as folder:
        proxy = start_proxy(imported(LITELLM), fallback_config(rendered, providers, ollama), Path(folder))
        try:
            print(f"LiteLLM {LITELLM.name}, {options.runs} runs per case, local stand-in at {ollama}")
            print(f"{'cloud provider':<16} {'median s':>9} {'min s':>7} {'max s':>7}  answered by")
            for case in ("ok", *CASES):
                model = "smart" if case == "ok" else f"smart-{case}"
                seconds, answers = [], set()
                for _ in range(options.runs):
                    response, took = proxy.ask(model)
                    seconds.append(took)
                    content = response.json()["choices"][0]["message"]["content"] if response.ok else response.text
                    answers.add(
                        {CLOUD_ANSWER: "cloud", LOCAL_ANSWER: "local"}.get(content, f"error {response.status_code}")
                    )
                line = f"{case:<16} {statistics.median(seconds):9.1f} {min(seconds):7.1f} {max(seconds):7.1f}"
                print(f"{line}  {', '.join(sorted(answers))}", flush=True)
        finally:
            proxy.stop()
            providers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
