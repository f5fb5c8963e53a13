"""The HardEdit generator against a real OpenAI-compatible HTTP server on 127.0.0.1.

The server answers from a script: good JSON, malformed JSON, prose, a 429, a 500, a reply slower
than the client's timeout. The generator must retry the transient failures, store every raw
response and every rejection, and never accept a subject twice across runs.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from editcollapse.orchestration.flows.hardedit import generate_hardedit_candidates
from editcollapse.stages.hardedit.backends import (
    Budget,
    BudgetExhausted,
    GenerationFailed,
    OpenAIChatBackend,
    OpenAIConfig,
)
from editcollapse.stages.hardedit.config import GenerationConfig
from editcollapse.warehouse import Warehouse


def sample(subject: str, prompt: str | None = None, target_new: str = "Lisbon", ground_truth: str = "Oslo"):
    return {
        "prompt": prompt or f"{subject} is based in",
        "subject": subject,
        "target_new": target_new,
        "ground_truth": ground_truth,
    }


class FakeOpenAI:
    """A scripted chat-completions endpoint. Each step: ``("ok", content)``, ``("status", code)``
    or ``("slow", seconds, content)``; requests beyond the script get a 500."""

    def __init__(self, script: list[tuple]):
        self.script = deque(script)
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                return

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                step = fake.script.popleft() if fake.script else ("status", 500)
                if step[0] == "slow":
                    time.sleep(step[1])
                    step = ("ok", step[2])
                if step[0] == "status":
                    payload = json.dumps({"error": {"message": f"scripted {step[1]}", "type": "test"}}).encode()
                    self.send_response(step[1])
                    if step[1] == 429:
                        self.send_header("Retry-After", "0.01")
                else:
                    payload = json.dumps(
                        {
                            "id": f"chatcmpl-{len(fake.requests)}",
                            "object": "chat.completion",
                            "created": 0,
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": step[1]},
                                }
                            ],
                            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
                        }
                    ).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def backend(server: FakeOpenAI, budget: Budget | None = None, **config) -> OpenAIChatBackend:
    settings = {
        "model": "fake-gpt",
        "base_url": server.base_url,
        "api_key": "test",
        "timeout_s": 0.5,
        "max_retries": 3,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "requests_per_minute": None,
        **config,
    }
    return OpenAIChatBackend(OpenAIConfig(**settings), budget=budget or Budget())


def run_flow(server: FakeOpenAI, warehouse, n_calls: int, **kwargs):
    return generate_hardedit_candidates.fn(config=config_for(server, n_calls, **kwargs), warehouse=str(warehouse))


def config_for(server: FakeOpenAI, n_calls: int, **kwargs) -> GenerationConfig:
    settings = {
        "backend": "openai",
        "n_calls": n_calls,
        "model": "fake-gpt",
        "base_url": server.base_url,
        "timeout_s": 0.5,
        "max_retries": 3,
        "backoff_initial_s": 0.01,
        "requests_per_minute": 0,
        **kwargs,
    }
    return GenerationConfig(**settings)


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_backend_retries_429_500_and_timeout_then_answers():
    with FakeOpenAI([("status", 429), ("status", 500), ("slow", 1.5, "late"), ("ok", "fine")]) as server:
        chat = backend(server)
        reply = chat.complete(messages("hello"))
    assert reply.text == "fine" and reply.attempts == 4
    assert [e.split(":")[1].strip() for e in reply.errors] == [
        "RateLimitError",
        "InternalServerError",
        "APITimeoutError",
    ]
    assert json.loads(reply.raw)["choices"][0]["message"]["content"] == "fine"  # the raw HTTP body
    assert reply.prompt_tokens == 100 and chat.budget.tokens == 150 and chat.budget.requests == 4
    assert server.requests[0]["messages"] == messages("hello") and server.requests[0]["model"] == "fake-gpt"


def test_backend_gives_up_after_max_retries_and_fails_fast_on_400():
    with FakeOpenAI([("status", 429)] * 3) as server:
        with pytest.raises(GenerationFailed, match="gave up after 3 attempts") as failure:
            backend(server, max_retries=2).complete(messages("x"))
        assert len(failure.value.errors) == 3
    with FakeOpenAI([("status", 400), ("ok", "never")]) as server:
        with pytest.raises(GenerationFailed, match="BadRequestError"):
            backend(server).complete(messages("x"))
        assert len(server.requests) == 1


def test_backend_budget_and_rate_limit():
    with FakeOpenAI([("ok", "a"), ("ok", "b"), ("ok", "c")]) as server:
        chat = backend(server, Budget(max_requests=2))
        chat.complete(messages("1"))
        chat.complete(messages("2"))
        with pytest.raises(BudgetExhausted, match="request budget spent"):
            chat.complete(messages("3"))
        assert len(server.requests) == 2
    with FakeOpenAI([("ok", "a"), ("ok", "b")]) as server:
        chat = backend(server, Budget(max_tokens=100))  # the first reply uses 150 tokens
        chat.complete(messages("1"))
        with pytest.raises(BudgetExhausted, match="token budget spent"):
            chat.complete(messages("2"))
    with FakeOpenAI([("ok", "a"), ("ok", "b")]) as server:
        paced = backend(server, requests_per_minute=300.0)  # at least 0.2 s between request starts
        started = time.monotonic()
        paced.complete(messages("1"))
        paced.complete(messages("2"))
        assert time.monotonic() - started >= 0.19


def test_generation_flow_stores_everything_and_dedupes_across_runs(tmp_path):
    good = json.dumps(
        [
            sample("Nintendo"),
            sample("Sony", "Sony's headquarters are in", "Lagos", "Tokyo"),
            sample("Kyoto", "Kyoto is a city in", "Brazil", "Japan"),
        ]
    )
    malformed = (
        '```json\n[{"prompt": "Xbox is made by", "subject": "Xbox", "target_new": "Dodge", '
        '"ground_truth": "Microsoft",}, {"prompt": "New York is in", "subject": "New York", '
        '"target_new": "Asia", "ground_truth": "America"}, {"subject": "Broken", "pro'
    )
    script = [
        ("ok", good),
        ("status", 429),
        ("ok", malformed),
        ("ok", "Sorry, I can't do JSON today."),
        ("slow", 1.5, "too late"),
        ("ok", json.dumps(sample("nintendo", "nintendo is based in"))),
    ]
    warehouse = tmp_path / "wh"
    with FakeOpenAI(script) as server:
        first = run_flow(server, warehouse, n_calls=4, seed=1)
    assert first.calls == 4 and first.requests == 6 and first.failed_calls == 1
    assert first.records_parsed == 6 and first.unique_valid == 4
    assert first.rejected_by_reason == {"single_word": 1, "duplicate": 1}
    assert first.headline() == "4 valid candidates of 6 parsed"
    assert json.loads(json.dumps(first.to_dict()))["budget"] == {"requests": 6, "tokens": 600}
    rows = Warehouse(warehouse).read("hardedit_candidates").to_pylist()
    assert len(rows) == 7  # 6 records + one row for the call without JSON
    no_json = [r for r in rows if r["sample_index"] == -1]
    assert no_json[0]["reject_reason"].startswith("call: no JSON record") and no_json[0]["raw_response"]
    assert all(json.loads(r["raw_response"])["model"] == "fake-gpt" for r in rows)
    rejected = {r["subject"]: r["reject_reason"] for r in rows if not r["valid"] and r["subject"]}
    assert rejected["New York"].startswith("single_word:") and rejected["nintendo"].startswith("duplicate:")
    # the excluded list of each prompt holds the subjects generated before it
    last_prompt = server.requests[-1]["messages"][0]["content"]
    excluded = json.loads(last_prompt.split("```json\n")[3].split("\n```")[0])["excluded_subjects"]
    assert excluded == ["Nintendo", "Sony", "Kyoto", "Xbox"]

    # a second run (other seed → other run id) sees the first run's subjects as taken
    with FakeOpenAI(
        [("ok", json.dumps([sample("Sony", "Sony was founded in", "Paris", "Tokyo"), sample("Sega")]))]
    ) as server:
        second = run_flow(server, warehouse, n_calls=1, seed=2)
        prompt = server.requests[0]["messages"][0]["content"]
    assert '"Nintendo", "Sony", "Kyoto", "Xbox"' in prompt
    assert second.unique_valid == 1 and second.rejected_by_reason == {"duplicate": 1}
    assert second.run_id != first.run_id

    # rerunning the first command resumes: its finished calls are skipped, nothing is asked
    with FakeOpenAI([]) as server:
        again = run_flow(server, warehouse, n_calls=4, seed=1)
        assert server.requests == []
    assert again.skipped_calls == 4 and again.calls == 0
    assert again.headline() == first.headline() and again.rejected_by_reason == first.rejected_by_reason
    valid = [r["subject"] for r in Warehouse(warehouse).read("hardedit_candidates").to_pylist() if r["valid"]]
    assert sorted(valid) == ["Kyoto", "Nintendo", "Sega", "Sony", "Xbox"]


def test_failed_request_is_stored_and_the_run_goes_on(tmp_path):
    with FakeOpenAI([("status", 401), ("ok", json.dumps([sample("Boeing")]))]) as server:
        summary = run_flow(server, tmp_path / "wh", n_calls=2)
    assert summary.calls == 2 and summary.failed_calls == 1 and summary.unique_valid == 1
    rows = Warehouse(tmp_path / "wh").read("hardedit_candidates").to_pylist()
    failed = [r for r in rows if r["call_index"] == 0]
    assert (
        failed[0]["reject_reason"].startswith("call: request failed")
        and "AuthenticationError" in failed[0]["reject_reason"]
    )


def test_generation_reports_progress_over_calls_and_a_resume_starts_at_the_stored_ones(tmp_path):
    from editcollapse.stages.hardedit.runs import run_generation

    progress: list[tuple[int, int]] = []

    def generate(server: FakeOpenAI) -> None:
        progress.clear()
        run_generation(
            config_for(server, n_calls=2), Warehouse(tmp_path / "wh"), on_progress=lambda *pair: progress.append(pair)
        )

    script = [("ok", json.dumps([sample(name)])) for name in ("Airbus", "Boeing")]
    with FakeOpenAI(script) as server:
        generate(server)
    assert progress == [(0, 2), (1, 2), (2, 2)]
    with FakeOpenAI([]) as server:  # the same run again: both calls stored, nothing asked
        generate(server)
    assert progress == [(2, 2)] and server.requests == []


def test_budget_stops_the_run_early(tmp_path):
    script = [("ok", json.dumps([sample(name)])) for name in ("Airbus", "Boeing", "Canon")]
    with FakeOpenAI(script) as server:
        summary = run_flow(server, tmp_path / "wh", n_calls=3, max_requests=2)
    assert summary.calls == 2 and summary.budget["requests"] == 2 and len(server.requests) == 2


def test_generation_config_rejects_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="backend must be one of local, openai, got 'claude'"):
        GenerationConfig(backend="claude")
    for field, value in (("n_calls", 0), ("n_points", 0), ("max_requests", 0), ("timeout_s", 0.0)):
        with pytest.raises(ValueError, match=f"^{field} must be"):
            GenerationConfig(**{field: value})
    assert GenerationConfig(max_requests=None, requests_per_minute=0).requests_per_minute == 0


def test_cli_generate_prints_the_result_and_rejects_a_bad_option(tmp_path):
    from typer.testing import CliRunner

    from editcollapse.cli import app

    common = ["hardedit", "generate", "--backend", "openai", "--model", "fake-gpt", "--rpm", "0"]
    common += ["--calls", "1", "--warehouse", str(tmp_path / "wh"), "--no-prefect"]
    with FakeOpenAI([("ok", json.dumps([sample("Boeing")]))]) as server:
        result = CliRunner().invoke(app, [*common, "--base-url", server.base_url])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert (printed["calls"], printed["unique_valid"], printed["model"]) == (1, 1, "fake-gpt")
    assert printed["run_id"].startswith("hardedit-gen-")
    bad = CliRunner().invoke(app, [*common, "--points", "0"])
    assert bad.exit_code == 2 and "n_points must be at least 1" in bad.output


def test_local_backend_needs_a_chat_template():
    from editcollapse.models import load_model
    from editcollapse.stages.hardedit.backends import TransformersChatBackend

    chat = TransformersChatBackend(load_model("tiny-llama", device="cpu"), max_new_tokens=4)
    with pytest.raises(GenerationFailed, match="no chat template"):
        chat.complete(messages("hi"))


@pytest.mark.smollm2
def test_local_backend_answers_with_smollm2_chat_template(smollm2):
    from editcollapse.stages.hardedit.backends import TransformersChatBackend

    chat = TransformersChatBackend(smollm2, budget=Budget(max_requests=2), max_new_tokens=12, temperature=0.0)
    reply = chat.complete(messages("Name one planet."))
    again = chat.complete(messages("Name one planet."))
    assert reply.text.strip() and reply.text == again.text  # greedy: reproducible
    assert reply.completion_tokens <= 12 and reply.prompt_tokens > 10  # the chat template wraps the message
    raw = json.loads(reply.raw)
    assert raw["text"] == reply.text and raw["model"] == "smollm2-135m" and raw["do_sample"] is False
    assert chat.budget.tokens == 2 * (reply.prompt_tokens + reply.completion_tokens)
    with pytest.raises(BudgetExhausted):
        chat.complete(messages("again"))
