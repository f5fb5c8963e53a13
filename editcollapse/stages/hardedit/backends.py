"""Chat backends for the HardEdit generator: any OpenAI-compatible endpoint, or a local chat model.

Both return a ``ChatReply`` that keeps the raw response (the HTTP body, or the decoded local
generation with its settings), so every answer can be re-parsed later. Both share a ``Budget``
(requests and tokens), checked before every request, so a run cannot overspend.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

Messages = list[dict[str, str]]
BACKENDS = ("local", "openai")  # a transformers chat model; an OpenAI-compatible endpoint


class BudgetExhausted(RuntimeError):
    """The run's request or token budget is spent; no further request is sent."""


class GenerationFailed(RuntimeError):
    """A request failed for good (retries spent or a non-retryable error); ``errors`` lists each attempt."""

    def __init__(self, message: str, errors: list[str]):
        super().__init__(message)
        self.errors = errors


@dataclass
class Budget:
    """Caps on requests sent (every attempt counts, retries included) and on tokens used."""

    max_requests: int | None = None
    max_tokens: int | None = None
    requests: int = 0
    tokens: int = 0

    def check(self) -> None:
        """Raise ``BudgetExhausted`` when another request would exceed a cap."""
        if self.max_requests is not None and self.requests >= self.max_requests:
            raise BudgetExhausted(f"request budget spent ({self.requests}/{self.max_requests})")
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExhausted(f"token budget spent ({self.tokens}/{self.max_tokens})")


@dataclass
class ChatReply:
    """One answered chat request."""

    text: str
    raw: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int
    errors: list[str]
    seconds: float


class ChatBackend(Protocol):
    """What the generator needs: answer a list of chat messages."""

    name: str
    budget: Budget

    def complete(self, messages: Messages) -> ChatReply: ...


@dataclass
class OpenAIConfig:
    """Endpoint settings. ``from_env`` reads ``EDITCOLLAPSE_LLM_{BASE_URL,MODEL,API_KEY}``,
    falling back to ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``."""

    model: str = "gpt-3.5-turbo"
    base_url: str | None = None
    api_key: str | None = None
    temperature: float = 1.0
    max_tokens: int = 2048
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    requests_per_minute: float | None = 20.0

    @classmethod
    def from_env(cls, **overrides: Any) -> OpenAIConfig:
        """Settings from the environment, with explicit (non-None) overrides winning."""
        env = os.environ
        values: dict[str, Any] = {
            "model": env.get("EDITCOLLAPSE_LLM_MODEL"),
            "base_url": env.get("EDITCOLLAPSE_LLM_BASE_URL") or env.get("OPENAI_BASE_URL"),
            "api_key": env.get("EDITCOLLAPSE_LLM_API_KEY") or env.get("OPENAI_API_KEY"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**{k: v for k, v in values.items() if v is not None})


RETRYABLE_NAMES = ("RateLimitError", "APITimeoutError", "APIConnectionError", "InternalServerError")


def _retry_after(error: Exception) -> float | None:
    """Seconds from a ``Retry-After`` header on the error's response, when given as a number."""
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class OpenAIChatBackend:
    """An OpenAI-compatible chat endpoint with retries, exponential backoff, a rate limit and a budget.

    Retried: 429 (honouring ``Retry-After``), timeouts, connection errors, 5xx. Anything else (400,
    401, 404 …) fails at once. Backoff doubles from ``backoff_initial_s`` up to ``backoff_max_s``
    with ±25 % jitter. The rate limit spaces request starts by ``60 / requests_per_minute`` s (0: none).
    """

    config: OpenAIConfig
    budget: Budget = field(default_factory=Budget)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    _last_start: float | None = field(default=None, init=False)
    _client: Any = field(default=None, init=False)

    @property
    def name(self) -> str:
        return f"openai:{self.config.model}@{self.config.base_url or 'api.openai.com'}"

    def _get_client(self) -> Any:
        if self._client is None:
            import openai

            if not self.config.api_key and not self.config.base_url:
                raise GenerationFailed(
                    "no API key: set EDITCOLLAPSE_LLM_API_KEY (or OPENAI_API_KEY), "
                    "or EDITCOLLAPSE_LLM_BASE_URL for a local server",
                    [],
                )
            self._client = openai.OpenAI(
                base_url=self.config.base_url,
                api_key=self.config.api_key or "none",
                timeout=self.config.timeout_s,
                max_retries=0,
            )
        return self._client

    def _pace(self) -> None:
        rpm = self.config.requests_per_minute
        if rpm and self._last_start is not None:
            wait = 60.0 / rpm - (time.monotonic() - self._last_start)
            if wait > 0:
                self.sleep(wait)
        self._last_start = time.monotonic()

    def _backoff(self, attempt: int, error: Exception) -> float:
        hinted = _retry_after(error)
        base = hinted if hinted is not None else self.config.backoff_initial_s * 2**attempt
        return min(self.config.backoff_max_s, base * self.rng.uniform(0.75, 1.25))

    def complete(self, messages: Messages) -> ChatReply:
        """Send one chat request, retrying transient failures; raise when it cannot be answered."""
        client = self._get_client()
        errors: list[str] = []
        started = time.monotonic()
        for attempt in range(self.config.max_retries + 1):
            self.budget.check()
            self._pace()
            self.budget.requests += 1
            try:
                response = client.chat.completions.with_raw_response.create(
                    model=self.config.model,
                    messages=messages,
                    temperature=self.config.temperature,
                    max_tokens=self.config.max_tokens,
                )
                completion = response.parse()
            except Exception as error:  # noqa: BLE001 - classified right below
                errors.append(f"attempt {attempt + 1}: {type(error).__name__}: {error}")
                if type(error).__name__ not in RETRYABLE_NAMES:
                    raise GenerationFailed(f"{self.name}: {errors[-1]}", errors) from error
                if attempt < self.config.max_retries:
                    self.sleep(self._backoff(attempt, error))
                continue
            usage = completion.usage
            if usage is not None:
                self.budget.tokens += usage.total_tokens or 0
            choice = completion.choices[0] if completion.choices else None
            return ChatReply(
                text=(choice.message.content or "") if choice else "",
                raw=response.text,
                model=completion.model or self.config.model,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                attempts=attempt + 1,
                errors=errors,
                seconds=time.monotonic() - started,
            )
        raise GenerationFailed(f"{self.name}: gave up after {len(errors)} attempts", errors)


@dataclass
class TransformersChatBackend:
    """A local chat model through its tokenizer's chat template (default: the embedded SmolLM2).

    Sampling is seeded per request (``seed + request index``), so a run is reproducible.
    """

    loaded: Any  # editcollapse.models.LoadedModel
    budget: Budget = field(default_factory=Budget)
    max_new_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0

    @property
    def name(self) -> str:
        return f"transformers:{self.loaded.name}@{self.loaded.revision}"

    def complete(self, messages: Messages) -> ChatReply:
        """Generate one answer (sampling unless ``temperature`` is 0)."""
        import torch

        self.budget.check()
        self.budget.requests += 1
        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        if not getattr(tokenizer, "chat_template", None):
            raise GenerationFailed(f"{self.name}: the tokenizer has no chat template", [])
        started = time.monotonic()
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.loaded.device)
        torch.manual_seed(self.seed + self.budget.requests)
        sampling = (
            {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p}
            if self.temperature > 0
            else {"do_sample": False}
        )
        with torch.no_grad():
            output = model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        prompt_tokens, completion_tokens = int(inputs["input_ids"].shape[1]), int(new_tokens.shape[0])
        self.budget.tokens += prompt_tokens + completion_tokens
        raw = json.dumps(
            {
                "text": text,
                "model": self.loaded.name,
                "revision": self.loaded.revision,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "seed": self.seed + self.budget.requests,
                "max_new_tokens": self.max_new_tokens,
                **sampling,
            },
            ensure_ascii=False,
        )
        return ChatReply(
            text=text,
            raw=raw,
            model=self.loaded.name,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            attempts=1,
            errors=[],
            seconds=time.monotonic() - started,
        )


def build_backend(
    backend: str,
    *,
    local_model: str,
    model: str | None,
    base_url: str | None,
    max_requests: int | None,
    max_tokens: int | None,
    requests_per_minute: float | None,
    max_new_tokens: int,
    temperature: float | None,
    seed: int,
    timeout_s: float | None = None,
    max_retries: int | None = None,
    backoff_initial_s: float | None = None,
) -> OpenAIChatBackend | TransformersChatBackend:
    """``"local"``: a transformers chat model (default the embedded SmolLM2); ``"openai"``: an
    OpenAI-compatible endpoint configured by arguments or ``EDITCOLLAPSE_LLM_*`` variables."""
    budget = Budget(max_requests=max_requests, max_tokens=max_tokens)
    if backend == "local":
        from editcollapse.models import load_model

        return TransformersChatBackend(
            load_model(local_model, seed=seed),
            budget=budget,
            max_new_tokens=max_new_tokens,
            temperature=0.7 if temperature is None else temperature,
            seed=seed,
        )
    if backend == "openai":
        config = OpenAIConfig.from_env(
            model=model,
            base_url=base_url,
            max_tokens=max_new_tokens,
            temperature=temperature,
            requests_per_minute=requests_per_minute,
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_initial_s=backoff_initial_s,
        )
        return OpenAIChatBackend(config, budget=budget, rng=random.Random(seed))
    raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
