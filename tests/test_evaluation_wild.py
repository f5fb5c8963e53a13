"""WILD evaluation: context types, answer scoring, and the LLM judge against a local HTTP stub."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import requires_smollm2

from editcollapse.core.case import EditCase, NeighborhoodPrompt
from editcollapse.evaluation.judge import (
    OPENAI_BASE_URL,
    JudgeConfig,
    JudgeError,
    LLMJudge,
    judge_config_from_env,
    judge_from_env,
    parse_verdict,
)
from editcollapse.evaluation.wild import (
    QA_INSTRUCTION,
    build_input,
    exact_match,
    normalize_answer,
    token_f1,
    wild_evaluate,
    wild_locality,
    wild_summary,
)
from editcollapse.models import load_model

CASE = EditCase(
    case_id="qa:1",
    dataset="qaedit",
    prompt="What is the capital of {}?",
    subject="France",
    target_new="Lyon",
    target_true="Paris",
    paraphrase_prompts=("Which city is France's capital?",),
    neighborhood=(NeighborhoodPrompt("What is the capital of Japan?", "Tokyo"),),
)


# --- scoring -----------------------------------------------------------------------------------


def test_squad_normalisation_exact_match_and_f1() -> None:
    assert normalize_answer("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert exact_match("the Paris.", "paris") == 1.0 and exact_match("Paris, France", "Paris") == 0.0
    assert token_f1("Paris France", "Paris") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("the cat sat", "a cat sat down") == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0 and token_f1("dog", "cat") == 0.0


def test_context_types() -> None:
    tiny = load_model("tiny-gpt2", device="cpu").tokenizer
    assert build_input(tiny, "Who?", "question-only") == "Who?"
    assert build_input(tiny, "Who?", "qa_inst") == QA_INSTRUCTION.format(question="Who?")
    with pytest.raises(ValueError, match="chat template"):
        build_input(tiny, "Who?", "chat-template")
    with pytest.raises(ValueError, match="unknown context type"):
        build_input(tiny, "Who?", "few-shot")


def test_wild_records_are_scored_from_their_answers() -> None:
    loaded = load_model("tiny-llama", device="cpu")
    records = wild_evaluate(loaded.model, loaded.tokenizer, [CASE], context_type="qa-inst", max_new_tokens=5)
    assert [r.kind for r in records] == ["rewrite", "rephrase", "locality"]
    for record in records:
        assert "." not in record.answer and "\n" not in record.answer and record.answer == record.answer.strip()
        assert record.exact_match == exact_match(record.answer, record.gold)
        assert record.f1 == token_f1(record.answer, record.gold)
        assert record.judge is None and record.score == record.exact_match
    summary = wild_summary(records)["qa:1"]
    assert summary["rewrite_acc"] == records[0].exact_match and summary["locality_f1"] == records[2].f1
    assert wild_locality(records, records) == {"qa:1": 1.0}


@requires_smollm2
def test_smollm2_answers_in_the_wild(smollm2) -> None:
    chat = build_input(smollm2.tokenizer, "Who?", "chat-template")
    assert chat.startswith("<|im_start|>system\nYou are a helpful") and chat.endswith("<|im_start|>assistant\n")
    # SmolLM2-135M-Instruct mostly ends its turn (EOS) right after the QA instruction: "What is
    # the capital of France/Japan?" get no answer, "Which city is France's capital?" gets "Paris".
    bare = wild_evaluate(smollm2.model, smollm2.tokenizer, [CASE], context_type="qa-inst", max_new_tokens=8)
    assert [r.answer for r in bare] == ["", "Paris", ""]
    records = wild_evaluate(smollm2.model, smollm2.tokenizer, [CASE], context_type="chat_temp", max_new_tokens=12)
    assert all(r.context_type == "chat-template" for r in records)
    rewrite, _, locality = records
    assert "Paris" in rewrite.answer and rewrite.exact_match == 0.0  # unedited: not the counterfactual Lyon
    assert locality.answer == "The capital of Japan is Tokyo"
    assert locality.exact_match == 0.0 and locality.f1 == pytest.approx(2 * (1 / 5) / (1 + 1 / 5))


# --- the judge, over real HTTP ------------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if server.fail_first and len(server.requests) == 1:
            self.send_response(500)
            self.end_headers()
            return
        time.sleep(server.delay)
        prompt = body["messages"][-1]["content"]
        gold = prompt.split("Gold answer: ")[1].split("\n")[0]
        predicted = prompt.split("Predicted answer: ")[1].split("\n")[0]
        reply = server.reply or ("A" if gold.lower() in predicted.lower() else "B")
        payload = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": reply}}],
            }
        ).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except BrokenPipeError:  # the client timed out and left
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.requests, server.fail_first, server.delay, server.reply = [], False, 0.0, None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _config(server, **kwargs) -> JudgeConfig:
    host, port = server.server_address
    return JudgeConfig(base_url=f"http://{host}:{port}/v1", api_key="sk-test", model="judge-x", **kwargs)


def test_judge_grades_over_http(stub) -> None:
    judge = LLMJudge(_config(stub))
    assert judge.grade("Capital of France?", "Paris", "It is Paris") == 1.0
    assert judge.grade("Capital of France?", "Paris", "Lyon") == 0.0
    request = stub.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer sk-test"
    assert request["body"]["model"] == "judge-x" and request["body"]["temperature"] == 0.0


def test_judge_retries_a_server_error(stub) -> None:
    stub.fail_first = True
    assert LLMJudge(_config(stub, max_retries=2)).grade("q", "Paris", "Paris") == 1.0
    assert len(stub.requests) == 2


def test_judge_timeout_raises_a_clear_error(stub) -> None:
    stub.delay = 2.0
    with pytest.raises(JudgeError, match="judge request to http://127.0.0.1"):
        LLMJudge(_config(stub, timeout_s=0.3, max_retries=0)).grade("q", "Paris", "Paris")


def test_unparseable_verdict_is_nan_not_a_guess(stub) -> None:
    stub.reply = "Maybe"
    assert math.isnan(LLMJudge(_config(stub)).grade("q", "Paris", "Paris"))
    assert parse_verdict(" A.") == 1.0 and parse_verdict("b") == 0.0


def test_wild_with_the_judge_from_the_environment(stub, monkeypatch) -> None:
    host, port = stub.server_address
    monkeypatch.setenv("EDITCOLLAPSE_JUDGE_BASE_URL", f"http://{host}:{port}/v1")
    monkeypatch.delenv("EDITCOLLAPSE_JUDGE_API_KEY", raising=False)
    stub.reply = "A"  # the judge calls every answer correct, exact match does not
    loaded = load_model("tiny-gpt2", device="cpu")
    records = wild_evaluate(loaded.model, loaded.tokenizer, [CASE], judge=judge_from_env(), max_new_tokens=4)
    assert len(stub.requests) == len(records) == 3
    assert all(r.judge == 1.0 and r.score == 1.0 and r.exact_match == 0.0 for r in records)
    assert stub.requests[0]["body"]["model"] == "gpt-4o-mini"


def test_judge_config_from_env() -> None:
    assert judge_config_from_env({}) is None  # → exact match
    assert judge_config_from_env({"EDITCOLLAPSE_JUDGE_API_KEY": "k"}).base_url == OPENAI_BASE_URL
    config = judge_config_from_env(
        {
            "EDITCOLLAPSE_JUDGE_BASE_URL": "http://h/v1",
            "EDITCOLLAPSE_JUDGE_MODEL": "m",
            "EDITCOLLAPSE_JUDGE_TIMEOUT": "5",
            "EDITCOLLAPSE_JUDGE_RETRIES": "1",
        }
    )
    assert (config.base_url, config.api_key, config.model, config.timeout_s, config.max_retries) == (
        "http://h/v1",
        None,
        "m",
        5.0,
        1,
    )
    with pytest.raises(JudgeError, match="must be numbers"):
        judge_config_from_env({"EDITCOLLAPSE_JUDGE_BASE_URL": "http://h", "EDITCOLLAPSE_JUDGE_TIMEOUT": "soon"})
