"""Chat backends behind one interface: deterministic (no model), local transformers, OpenAI-compatible HTTP.

Messages are OpenAI-style dicts ``{"role": ..., "content": ...}``; tools are OpenAI function schemas.
Every backend returns a :class:`ChatReply` with text and parsed tool calls; ``stream`` yields text pieces.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dokuei.settings import Settings

log = logging.getLogger(__name__)

Message = dict[str, Any]


@dataclass
class ToolCall:
    name: str
    args: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:8]}")


@dataclass
class ChatReply:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)


class ChatBackend(ABC):
    name: str = "base"
    #: True when the backend can choose tools and write answers (False: the deterministic planner runs)
    is_llm: bool = True

    @abstractmethod
    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> ChatReply:
        """One completion; tool calls are parsed out of the reply."""

    def stream(self, messages: list[Message]) -> Iterator[str]:
        yield self.chat(messages).text


class DeterministicBackend(ChatBackend):
    """No model: planning by the router, answers by the deterministic composer."""

    name = "deterministic"
    is_llm = False

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> ChatReply:
        raise RuntimeError("the deterministic backend has no chat model; the graph uses the router instead")


class ScriptedBackend(ChatBackend):
    """Replays fixed replies in order: offline, deterministic graph tests with real tool calling."""

    name = "scripted"

    def __init__(self, replies: list[ChatReply]) -> None:
        self.replies = list(replies)
        self.seen: list[list[Message]] = []

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> ChatReply:
        self.seen.append(list(messages))
        if not self.replies:
            return ChatReply(text="")
        return self.replies.pop(0)


_TOOL_CALL_TAG = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.DOTALL)


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Parse Hermes/Qwen-style ``<tool_call>{json}</tool_call>`` blocks, or a bare JSON call.

    Returns the text without the tool-call blocks and the calls. Malformed JSON is left in the text.
    """
    calls: list[ToolCall] = []

    def take(match: re.Match[str]) -> str:
        try:
            payload = json.loads(match.group(1))
        except json.JSONDecodeError:
            return match.group(0)
        args = payload.get("arguments", payload.get("parameters", {}))
        if isinstance(args, str):
            args = json.loads(args)
        calls.append(ToolCall(name=str(payload["name"]), args=dict(args)))
        return ""

    remaining = _TOOL_CALL_TAG.sub(take, text)
    stripped = remaining.strip()
    if not calls and stripped.startswith("{") and stripped.endswith("}"):
        try:
            payload = json.loads(stripped)
            if isinstance(payload, dict) and "name" in payload and ("arguments" in payload or "parameters" in payload):
                args = payload.get("arguments", payload.get("parameters", {}))
                if isinstance(args, str):
                    args = json.loads(args)
                calls.append(ToolCall(name=str(payload["name"]), args=dict(args or {})))
                remaining = ""
        except json.JSONDecodeError:
            pass
    return remaining.strip(), calls


class TransformersBackend(ChatBackend):
    """A local instruct model directory (llm-jp, ELYZA, Qwen, Swallow …) on CUDA or CPU."""

    name = "transformers"

    def __init__(self, model_path: Path, device: str = "auto", max_new_tokens: int = 768) -> None:
        if not Path(model_path).is_dir():
            raise FileNotFoundError(
                f"LLM model directory {model_path} does not exist; set DOKUEI_LLM_MODEL_PATH to a local "
                "transformers model folder (config.json, tokenizer, weights)"
            )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch: Any = torch
        self.tokenizer: Any
        self.model: Any
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        dtype = torch.float16 if device == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(str(model_path), local_files_only=True, dtype=dtype)
        self.model.to(device).eval()
        self.max_new_tokens = max_new_tokens
        self.model_path = Path(model_path)

    def _inputs(self, messages: list[Message], tools: list[dict[str, Any]] | None) -> Any:
        kwargs: dict[str, Any] = {"add_generation_prompt": True, "return_tensors": "pt", "return_dict": True}
        if tools:
            kwargs["tools"] = tools
        encoded = self.tokenizer.apply_chat_template(messages, **kwargs)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> ChatReply:
        inputs = self._inputs(messages, tools)
        with self.torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new_tokens = out[0, inputs["input_ids"].shape[1]:]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        remaining, calls = parse_tool_calls(text)
        return ChatReply(text=remaining, tool_calls=calls)

    def stream(self, messages: list[Message]) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        inputs = self._inputs(messages, None)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {**inputs, "max_new_tokens": self.max_new_tokens, "do_sample": False, "streamer": streamer,
                  "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        thread = threading.Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        thread.start()
        yield from streamer
        thread.join()


class OpenAICompatBackend(ChatBackend):
    """Any OpenAI-compatible chat endpoint: vLLM, llama.cpp server, Ollama (inside the hospital)."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout_s: float = 120.0) -> None:
        import httpx

        self.model = model
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                   headers={"Authorization": f"Bearer {api_key}"})

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None) -> ChatReply:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
        if tools:
            body["tools"] = tools
        response = self.client.post("/chat/completions", json=body)
        response.raise_for_status()
        message = response.json()["choices"][0]["message"]
        calls = []
        for call in message.get("tool_calls") or []:
            fn = call["function"]
            args = fn.get("arguments") or "{}"
            calls.append(ToolCall(name=fn["name"], args=json.loads(args) if isinstance(args, str) else args,
                                  id=call.get("id") or f"call_{uuid.uuid4().hex[:8]}"))
        text = message.get("content") or ""
        if not calls:
            text, calls = parse_tool_calls(text)
        return ChatReply(text=text, tool_calls=calls)

    def stream(self, messages: list[Message]) -> Iterator[str]:
        body = {"model": self.model, "messages": messages, "temperature": 0, "stream": True}
        with self.client.stream("POST", "/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                delta = json.loads(data)["choices"][0].get("delta", {})
                if delta.get("content"):
                    yield delta["content"]


def make_backend(settings: Settings) -> ChatBackend:
    if settings.llm_backend == "transformers":
        if settings.llm_model_path is None:
            raise ValueError("llm_backend=transformers needs DOKUEI_LLM_MODEL_PATH")
        device = "cpu" if settings.device == "cpu" else "auto"
        return TransformersBackend(settings.llm_model_path, device=device)
    if settings.llm_backend == "openai":
        return OpenAICompatBackend(settings.openai_base_url, settings.openai_model, settings.openai_api_key)
    return DeterministicBackend()
