"""Optional LLM-as-a-judge for WILD answers, through any OpenAI-compatible chat endpoint.

Configured from the environment (nothing is read at import time):

* ``EDITCOLLAPSE_JUDGE_BASE_URL`` — e.g. ``http://127.0.0.1:8000/v1`` (vLLM, llama.cpp, Ollama …);
  when unset but a key is set, OpenAI's ``https://api.openai.com/v1``.
* ``EDITCOLLAPSE_JUDGE_API_KEY`` — the bearer key (local servers that need none: leave unset).
* ``EDITCOLLAPSE_JUDGE_MODEL`` — default ``gpt-4o-mini``, the judge of the WILD paper.
* ``EDITCOLLAPSE_JUDGE_TIMEOUT`` (seconds, default 30) and ``EDITCOLLAPSE_JUDGE_RETRIES`` (default 3).

With neither a base URL nor a key set there is no judge and WILD scoring falls back to exact
match. The grading follows the WILD paper: the judge sees the question, the gold answer and the
prediction and answers "A" (correct) or "B" (incorrect), at temperature 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_BASE_URL = "https://api.openai.com/v1"

GRADER_PROMPT = """You grade answers to factual questions. Compare the predicted answer with the gold answer.

The prediction is CORRECT when it contains the essential information of the gold answer (wording,
case, extra correct detail and aliases do not matter) and states nothing that contradicts it.
It is INCORRECT when it gives a different or contradicting fact, only part of a multi-part gold
answer, several competing answers, or repeats itself endlessly.

Question: {question}
Gold answer: {gold}
Predicted answer: {predicted}

Reply with the single letter A if the prediction is CORRECT, or B if it is INCORRECT. No other text."""


class JudgeError(RuntimeError):
    """The judge endpoint failed (after retries) or is misconfigured."""


@dataclass(frozen=True)
class JudgeConfig:
    """Where and how to reach the judge."""

    base_url: str
    api_key: str | None
    model: str = DEFAULT_MODEL
    timeout_s: float = 30.0
    max_retries: int = 3


def judge_config_from_env(environ: dict[str, str] | None = None) -> JudgeConfig | None:
    """The judge configured by ``EDITCOLLAPSE_JUDGE_*`` variables, or None when none is set."""
    env = os.environ if environ is None else environ
    base_url = env.get("EDITCOLLAPSE_JUDGE_BASE_URL") or None
    api_key = env.get("EDITCOLLAPSE_JUDGE_API_KEY") or None
    if base_url is None and api_key is None:
        return None
    try:
        timeout = float(env.get("EDITCOLLAPSE_JUDGE_TIMEOUT", "30"))
        retries = int(env.get("EDITCOLLAPSE_JUDGE_RETRIES", "3"))
    except ValueError as error:
        raise JudgeError(f"EDITCOLLAPSE_JUDGE_TIMEOUT / _RETRIES must be numbers: {error}") from error
    return JudgeConfig(
        base_url=base_url or OPENAI_BASE_URL,
        api_key=api_key,
        model=env.get("EDITCOLLAPSE_JUDGE_MODEL") or DEFAULT_MODEL,
        timeout_s=timeout,
        max_retries=retries,
    )


def parse_verdict(reply: str) -> float:
    """1.0 for "A", 0.0 for "B" (a trailing period or whitespace allowed); NaN for anything else."""
    letter = reply.strip().rstrip(".").strip().upper()
    return {"A": 1.0, "B": 0.0}.get(letter, float("nan"))


class LLMJudge:
    """Grades (question, gold, predicted) triples with a chat model; one request per triple."""

    def __init__(self, config: JudgeConfig) -> None:
        try:
            from openai import OpenAI
        except ImportError as error:  # pragma: no cover - openai is a dependency
            raise JudgeError("the LLM judge needs the `openai` package: pip install openai") from error
        self.config = config
        # Local OpenAI-compatible servers usually ignore the key, but the client requires one.
        self._client = OpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "unused",
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )

    def grade(self, question: str, gold: str, predicted: str) -> float:
        """1.0 (correct), 0.0 (incorrect) or NaN (the judge's reply was not A or B)."""
        import openai

        content = GRADER_PROMPT.format(question=question, gold=gold, predicted=predicted)
        try:
            completion = self._client.chat.completions.create(
                model=self.config.model, temperature=0.0, max_tokens=2, messages=[{"role": "user", "content": content}]
            )
        except openai.OpenAIError as error:
            raise JudgeError(f"judge request to {self.config.base_url} failed: {error}") from error
        return parse_verdict(completion.choices[0].message.content or "")


def judge_from_env() -> LLMJudge | None:
    """An :class:`LLMJudge` when the environment configures one, else None (exact match is used)."""
    config = judge_config_from_env()
    return None if config is None else LLMJudge(config)
