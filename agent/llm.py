"""Chat backends behind one interface: deterministic (no model), local transformers, llama.cpp (GGUF,
in process), OpenAI-compatible HTTP. Planning by constrained decoding lives here too (:func:`plan_with_llm`).

Messages are OpenAI-style dicts ``{"role": ..., "content": ...}``; tools are OpenAI function schemas.
Every backend returns a :class:`ChatReply` with text and parsed tool calls; ``stream`` yields text pieces.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dokuei import cancel
from dokuei.agent import prompts
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

    #: True when ``chat(..., json_schema=...)`` constrains decoding to the schema (grammar sampling)
    supports_json_schema: bool = False

    @abstractmethod
    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
             json_schema: dict[str, Any] | None = None) -> ChatReply:
        """One completion; tool calls are parsed out of the reply.

        With ``json_schema`` a backend that ``supports_json_schema`` returns text that is one JSON
        value matching the schema; other backends ignore it (callers still validate the reply).
        """

    def stream(self, messages: list[Message]) -> Iterator[str]:
        yield self.chat(messages).text


class DeterministicBackend(ChatBackend):
    """No model: planning by the router, answers by the deterministic composer."""

    name = "deterministic"
    is_llm = False

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
             json_schema: dict[str, Any] | None = None) -> ChatReply:
        raise RuntimeError("the deterministic backend has no chat model; the graph uses the router instead")


class ScriptedBackend(ChatBackend):
    """Replays fixed replies in order: offline, deterministic graph tests with real tool calling."""

    name = "scripted"

    def __init__(self, replies: list[ChatReply], supports_json_schema: bool = False) -> None:
        self.replies = list(replies)
        self.supports_json_schema = supports_json_schema
        self.seen: list[list[Message]] = []
        self.schemas: list[dict[str, Any] | None] = []

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
             json_schema: dict[str, Any] | None = None) -> ChatReply:
        self.seen.append(list(messages))
        self.schemas.append(json_schema)
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

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
             json_schema: dict[str, Any] | None = None) -> ChatReply:
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
    supports_json_schema = True

    def __init__(self, base_url: str, model: str, api_key: str = "EMPTY", timeout_s: float = 120.0) -> None:
        import httpx

        self.model = model
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s,
                                   headers={"Authorization": f"Bearer {api_key}"})

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
             json_schema: dict[str, Any] | None = None) -> ChatReply:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
        if json_schema is not None:  # llama.cpp server and vLLM both honour a json_schema response format
            body["response_format"] = _response_format(json_schema)
        elif tools:
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


def _response_format(json_schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "reply", "strict": True, "schema": json_schema}}


def busy_cores(sample_s: float = 0.2) -> float:
    """Cores other work keeps busy now: the non-idle share of CPU time over ``sample_s`` (``/proc/stat``).

    The load average is the fallback only: it counts tasks waiting on I/O too, and on this VM it sits near
    1.0 while both cores are idle, which halved llama.cpp's threads (5 → 10 tokens/s with 2, 12-04).
    """
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total, idle + iowait
    try:
        total0, idle0 = sample()
        time.sleep(sample_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    return cpus * (1.0 - (idle1 - idle0) / max(total1 - total0, 1))


def default_threads(reserve: int = 0) -> int:
    """Threads for llama.cpp: ``$DOKUEI_LLM_THREADS``, else the cores this process may use minus the busy ones."""
    override = os.environ.get("DOKUEI_LLM_THREADS")
    if override:
        return max(1, int(override))
    cores = len(os.sched_getaffinity(0))
    return max(1, cores - int(busy_cores() + 0.5) - reserve)


def _chunk_text(chunk: Any) -> str:
    """The text of one streamed chat-completion chunk (llama.cpp may hand over one chunk or a list)."""
    if isinstance(chunk, str):
        chunk = json.loads(chunk) if chunk.strip() else {}
    if isinstance(chunk, list):
        return "".join(_chunk_text(c) for c in chunk)
    if not isinstance(chunk, dict):
        return ""
    pieces = []
    for choice in chunk.get("choices") or []:
        content = (choice.get("delta") or {}).get("content")
        if content:
            pieces.append(str(content))
    return "".join(pieces)


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class LlamaCppServer:
    """A running llama.cpp server (in this process, through xllamacpp) and the URL it listens on."""

    server: Any
    base_url: str


def start_llamacpp_server(model_path: Path, port: int = 8000, n_threads: int | None = None, n_ctx: int = 4096,
                          expected_sha256: str | None = None) -> LlamaCppServer:
    """Verify the GGUF against its pinned sha256, then load it into xllamacpp's server on 127.0.0.1.

    The same server answers the in-process calls of :class:`LlamaCppBackend` and the OpenAI-compatible
    HTTP endpoint that the ``openai`` backend talks to. It listens on loopback only; ``port=0`` picks a free one.
    """
    from dokuei.llm_install import verify_model

    verify_model(Path(model_path), expected_sha256)  # never load an unverified file
    import xllamacpp  # type: ignore[import-untyped]

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.hostnames = ["127.0.0.1"]
    params.port = port or _free_loopback_port()
    threads = n_threads or default_threads()
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.use_jinja = True
    log.info("loading %s into llama.cpp with %d thread(s)", model_path, threads)
    server = xllamacpp.Server(params)
    address = str(server.listening_address).rstrip("/")
    return LlamaCppServer(server=server, base_url=address if address.startswith("http") else f"http://{address}")


#: a compact plan of four calls with typed inputs fits well inside this; a runaway plan is cut off (and rejected)
PLAN_MAX_TOKENS = 256


class LlamaCppBackend(ChatBackend):
    """A GGUF model run in this process by llama.cpp (xllamacpp): the embedded try-out model by default.

    ``server`` may be passed in (tests hand over a scripted stand-in with ``handle_chat_completions``);
    otherwise the model file is verified and loaded. Decoding can be constrained to a JSON schema.
    The loaded server also answers OpenAI-compatible HTTP on ``base_url`` (loopback only).
    """

    name = "llamacpp"
    supports_json_schema = True

    def __init__(self, model_path: Path | None = None, n_threads: int | None = None, n_ctx: int = 4096,
                 temperature: float = 0.2, max_tokens: int = 768, port: int = 8000, server: Any = None) -> None:
        if server is None:
            if model_path is None:
                raise ValueError("LlamaCppBackend needs a model path or a server")
            running = start_llamacpp_server(Path(model_path), port=port, n_threads=n_threads, n_ctx=n_ctx)
            server, self.base_url = running.server, running.base_url
        else:
            self.base_url = ""
        self.server = server
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.model_path = model_path
        #: ``usage`` and ``timings`` of the last completion as llama.cpp reports them (tokens, ms)
        self.last_usage: dict[str, Any] = {}

    def _body(self, messages: list[Message], json_schema: dict[str, Any] | None, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": messages, "temperature": self.temperature,
                                "max_tokens": self.max_tokens, "stream": stream}
        if json_schema is not None:  # a plan is a choice, not prose: greedy decoding under the grammar
            body["response_format"] = _response_format(json_schema)
            body["temperature"] = 0.0
            body["max_tokens"] = min(self.max_tokens, PLAN_MAX_TOKENS)
        return body

    def chat(self, messages: list[Message], tools: list[dict[str, Any]] | None = None,
             json_schema: dict[str, Any] | None = None) -> ChatReply:
        if tools and json_schema is None:  # this model writes tool calls as text: plan under a grammar instead
            plan = plan_with_llm(self, messages, tools)
            return ChatReply(text="" if plan.error is None else plan.raw, tool_calls=plan.calls)
        reply = self._complete(self._body(messages, json_schema, stream=False))
        if not isinstance(reply, dict) or "choices" not in reply:
            raise RuntimeError(f"llama.cpp returned an error: {reply!r}"[:500])
        self.last_usage = {"usage": reply.get("usage", {}), "timings": reply.get("timings", {})}
        text = str(reply["choices"][0]["message"].get("content") or "")
        if json_schema is not None:
            return ChatReply(text=text)
        remaining, calls = parse_tool_calls(text)
        return ChatReply(text=remaining, tool_calls=calls)

    def _complete(self, body: dict[str, Any]) -> Any:
        """One completion. In a turn that can be stopped (``dokuei.cancel``) it is decoded as a stream, so
        停止 ends llama.cpp between tokens (a callback that returns True stops it) rather than after the
        whole reply; the pieces are then joined into the reply's usual shape."""
        event = cancel.current()
        if event is None:
            return self.server.handle_chat_completions(body)
        pieces: list[str] = []
        last: dict[str, Any] = {}

        def on_chunk(chunk: Any) -> bool:
            for item in chunk if isinstance(chunk, list) else [chunk]:
                if isinstance(item, str):
                    item = json.loads(item) if item.strip() else {}
                if isinstance(item, dict) and item:
                    last.clear()
                    last.update(item)
                pieces.append(_chunk_text(item))
            return event.is_set()

        self.server.handle_chat_completions({**body, "stream": True}, on_chunk)
        cancel.check()
        if "choices" not in last:  # an error object instead of chunks: the caller reports it
            return last
        return {"choices": [{"message": {"role": "assistant", "content": "".join(pieces)}}],
                "usage": last.get("usage", {}), "timings": last.get("timings", {})}

    def stream(self, messages: list[Message]) -> Iterator[str]:
        """Yield the answer piece by piece while llama.cpp decodes it (on a worker thread); 停止 ends it."""
        pieces: queue.Queue[object] = queue.Queue()
        done = object()
        failure: list[BaseException] = []
        event = cancel.current()  # the worker thread has no turn context: take the event along

        def on_chunk(chunk: Any) -> bool:
            text = _chunk_text(chunk)
            if text:
                pieces.put(text)
            return event is not None and event.is_set()

        def work() -> None:
            try:
                self.server.handle_chat_completions(self._body(messages, None, stream=True), on_chunk)
            except BaseException as exc:  # handed to the consumer, raised there
                failure.append(exc)
            finally:
                pieces.put(done)

        threading.Thread(target=work, daemon=True, name="llamacpp-stream").start()
        while (item := pieces.get()) is not done:
            cancel.check()
            yield str(item)
        cancel.check()
        if failure:
            raise RuntimeError("llama.cpp streaming failed") from failure[0]


# --- planning by constrained decoding ---------------------------------------------------------------

@dataclass
class LlmPlan:
    """The tool calls a model chose under the plan schema, or why its plan was rejected."""

    calls: list[ToolCall] = field(default_factory=list)
    #: set when the reply was malformed or named a tool outside the registry: the router takes over
    error: str | None = None
    raw: str = ""


def _inline_refs(schema: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """Replace local ``$ref``s by their definitions, so each tool's input can sit inside one schema."""
    if depth > 20:
        raise ValueError("tool input schema nests too deeply (recursive $ref?)")
    if isinstance(schema, dict):
        if "$ref" in schema:
            target = defs[str(schema["$ref"]).rsplit("/", 1)[-1]]
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            return _inline_refs({**target, **rest}, defs, depth + 1)
        return {k: _inline_refs(v, defs, depth + 1) for k, v in schema.items() if k not in ("$defs", "title")}
    if isinstance(schema, list):
        return [_inline_refs(v, defs, depth + 1) for v in schema]
    return schema


#: llguidance (llama.cpp's grammar engine) writes compact JSON under this key: no optional whitespace
_COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"}


def plan_schema(tools: list[dict[str, Any]], max_calls: int = 4, n_candidates: int = 0,
                min_calls: int = 0) -> dict[str, Any]:
    """The JSON schema of a compact plan: ``{"c":[{"k":1}]}`` or ``{"c":[{"t":<tool>,"a":<its input>}]}``.

    ``{"k": n}`` takes the router's n-th candidate call as it stands (1-based, only when there are
    candidates), so the usual plan is a handful of tokens instead of a copied input; ``{"t", "a"}``
    is a call of the model's own: one ``anyOf`` branch per registry tool, so a name outside the
    registry or arguments of the wrong type cannot be decoded. Short keys and no whitespace
    (``x-guidance``) keep every token the 1.5B model decodes under the grammar a useful one.
    """
    branches: list[dict[str, Any]] = []
    if n_candidates > 0:
        branches.append({"type": "object", "additionalProperties": False, "required": ["k"],
                         "properties": {"k": {"type": "integer", "minimum": 1, "maximum": n_candidates}}})
    for tool in tools:
        fn = tool["function"]
        params = fn.get("parameters") or {"type": "object"}
        branches.append({"type": "object", "additionalProperties": False, "required": ["t", "a"],
                         "properties": {"t": {"const": fn["name"]},
                                        "a": _inline_refs(params, params.get("$defs", {}))}})
    return {"type": "object", "additionalProperties": False, "required": ["c"], "x-guidance": dict(_COMPACT_JSON),
            "properties": {"c": {"type": "array", "minItems": min_calls, "maxItems": max_calls,
                                 "items": {"anyOf": branches}}}}


Validator = Callable[[dict[str, Any]], Any]
Candidate = tuple[str, Any, str]


def _raw_call(item: Any, candidates: list[Candidate]) -> tuple[str, Any] | str:
    """(name, arguments) of one plan item, or why it is malformed. Accepts the compact keys
    (``k`` / ``t`` + ``a``) and the long form (``name`` + ``arguments``) other servers may return."""
    if not isinstance(item, dict):
        return f"malformed call {item!r}"[:300]
    if "k" in item:
        k = item["k"]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= len(candidates):
            return f"candidate {k!r} does not exist (the router offered {len(candidates)})"
        chosen, inp, _reason = candidates[k - 1]
        return str(chosen), inp
    name = item.get("t", item.get("name", ""))
    args = item.get("a", item.get("arguments", {}))
    if not isinstance(args, dict):
        return f"malformed call {item!r}"[:300]
    return str(name), args


def parse_plan(text: str, tools: list[dict[str, Any]], validators: Mapping[str, Validator] | None = None,
               candidates: list[Candidate] | None = None) -> LlmPlan:
    """Read a plan reply; anything malformed or outside the registry rejects the whole plan."""
    known = {t["function"]["name"] for t in tools}
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        return LlmPlan(error=f"plan is not JSON: {exc}", raw=text)
    raw_calls = payload.get("c", payload.get("calls")) if isinstance(payload, dict) else None
    if not isinstance(raw_calls, list):
        return LlmPlan(error="plan has no list of calls", raw=text)
    calls: list[ToolCall] = []
    for item in raw_calls:
        taken = _raw_call(item, list(candidates or []))
        if isinstance(taken, str):
            return LlmPlan(error=taken, raw=text)
        name, raw_args = taken
        if name not in known:
            return LlmPlan(error=f"tool {name!r} is not in the registry", raw=text)
        args = dict(raw_args or {}) if isinstance(raw_args, dict) else {}
        if validators and name in validators:
            try:
                checked = validators[name](args)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                return LlmPlan(error=f"arguments of {name} do not validate: {exc}"[:500], raw=text)
            if hasattr(checked, "model_dump"):  # canonical form, as the tool records its input
                args = checked.model_dump(mode="json")
        calls.append(ToolCall(name=name, args=args))
    return LlmPlan(calls=calls, raw=text)


def _signature(name: str, args: Any) -> str:
    return f"{name}:{json.dumps(args, sort_keys=True, ensure_ascii=False, default=str)}"


def plan_with_llm(backend: ChatBackend, messages: list[Message], tools: list[dict[str, Any]],
                  candidates: list[Candidate] | None = None, attachment_kinds: list[str] | None = None,
                  validators: Mapping[str, Validator] | None = None,
                  done: list[tuple[str, Any]] | None = None) -> LlmPlan:
    """Ask ``backend`` for tool calls under :func:`plan_schema`.

    ``candidates`` are the deterministic router's (name, input, reason), numbered for ``{"k": n}``,
    and ``attachment_kinds`` the kinds found at intake; both go to the model as context. ``done`` are
    the calls already run this turn: repeating one is dropped, so a model that keeps calling the same
    tool still finishes, and once every candidate has run the turn finishes without asking the model
    again (a whole grammar-constrained call saved; the model's own extra calls are asked about). On
    the first step, choosing no tool while the router has candidates counts as a failed plan.
    """
    candidates = list(candidates or [])
    seen = {_signature(n, a) for n, a in done or []}
    ran, offered = {n for n, _ in done or []}, {n for n, _, _ in candidates}
    if done and candidates and ran == offered:  # names: the recorded input is the canonical form
        return LlmPlan(raw="(every router candidate has run: no further plan asked)")
    context = prompts.PLAN_CONTEXT_JA.format(
        kinds="、".join(sorted(set(attachment_kinds or []))) or "（なし）",
        candidates="\n".join(f'{{"k":{k}}} = {name}: {json.dumps(inp, ensure_ascii=False, default=str)}（{reason}）'
                             for k, (name, inp, reason) in enumerate(candidates, 1)) or "（なし）")
    ask = [{"role": "system", "content": prompts.PLAN_JSON_SYSTEM_JA}, *messages[1:],
           {"role": "user", "content": context}] if messages and messages[0].get("role") == "system" \
        else [{"role": "system", "content": prompts.PLAN_JSON_SYSTEM_JA}, *messages,
              {"role": "user", "content": context}]
    ask = [m if m.get("role") != "tool" else {"role": "user", "content": f"ツール {m.get('name', '')} の結果: "
                                                                           f"{m.get('content', '')}"}
           for m in ask]  # tool messages without a preceding call confuse chat templates
    try:
        # first step with router candidates: at least one call (the 1.5B model otherwise answers {"c":[]}, live 12-03)
        reply = backend.chat(ask, json_schema=plan_schema(tools, n_candidates=len(candidates),
                                                          min_calls=1 if candidates and not done else 0))
    except Exception as exc:  # a backend failure is a failed plan step, not a crashed turn
        log.warning("LLM planning failed: %s", exc)
        return LlmPlan(error=f"backend error: {exc}"[:500])
    plan = parse_plan(reply.text, tools, validators, candidates)
    if plan.error is not None:
        log.warning("LLM plan rejected (%s): %.300s", plan.error, plan.raw)
        return plan
    fresh = [c for c in plan.calls if _signature(c.name, c.args) not in seen]
    if not done and not fresh and candidates:
        return LlmPlan(error="the model chose no tool although the router found candidates", raw=plan.raw)
    return LlmPlan(calls=fresh, raw=plan.raw)


def llamacpp_model_path(settings: Settings) -> Path:
    """``DOKUEI_LLM_MODEL_PATH`` when it names a ``.gguf`` file, else the installed embedded model."""
    if settings.llm_model_path is not None and Path(settings.llm_model_path).suffix == ".gguf":
        return Path(settings.llm_model_path)
    from dokuei.llm_install import default_model_path

    return default_model_path(settings)


def make_backend(settings: Settings) -> ChatBackend:
    """The configured backend; a real LLM is also registered in :mod:`dokuei.llm_hook` for report tools."""
    backend = _make_backend(settings)
    from dokuei import llm_hook

    llm_hook.register(backend.name, (lambda msgs: backend.chat(list(msgs)).text) if backend.is_llm else None)
    return backend


def _make_backend(settings: Settings) -> ChatBackend:
    if settings.llm_backend == "transformers":
        if settings.llm_model_path is None:
            raise ValueError("llm_backend=transformers needs DOKUEI_LLM_MODEL_PATH")
        device = "cpu" if settings.device == "cpu" else "auto"
        return TransformersBackend(settings.llm_model_path, device=device)
    if settings.llm_backend == "llamacpp":
        return LlamaCppBackend(llamacpp_model_path(settings))
    if settings.llm_backend == "openai":
        return OpenAICompatBackend(settings.openai_base_url, settings.openai_model, settings.openai_api_key)
    return DeterministicBackend()
