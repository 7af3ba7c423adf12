"""dokuei's tools over the Model Context Protocol (official MCP Python SDK, low-level server).

Every registered tool (built-in and entry-point) is listed with its pydantic input schema; a call
returns the tool's ``ToolResult`` as structured content (status, summary_ja, output, citations,
provenance, artifacts) and the Japanese summary as text. An ``ask`` tool runs the whole agent.
Files are accepted only under the allowed roots; artifacts are served as resources; every call is
written to the audit log like a chat turn. Transports: stdio, and streamable HTTP on loopback only.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from pydantic import BaseModel, ValidationError

from dokuei import __version__
from dokuei.agent import audit
from dokuei.settings import Settings
from dokuei.tools.base import Tool, ToolResult
from dokuei.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

ASK_TOOL = "ask"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

ASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "description": "the clinician's question in Japanese"},
        "attachments": {"type": "array", "items": {"type": "string"},
                        "description": "paths of studies, ECGs, images or reports under the allowed roots"},
        "patient": {"type": "object", "description": "age_years, sex (M/F), height_cm, weight_kg"},
    },
    "required": ["question"],
}


class PathNotAllowedError(ValueError):
    """A path in a call lies outside the roots this server may read."""


def _paths_in(model: BaseModel) -> list[Path]:
    """Every Path value of a validated tool input, including those inside lists and nested models."""
    found: list[Path] = []
    for _, value in model:
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, Path):
                found.append(item)
            elif isinstance(item, BaseModel):
                found.extend(_paths_in(item))
    return found


@dataclass
class DokueiMcp:
    """The state behind one MCP server: settings, tools, allowed roots and the artifacts served."""

    settings: Settings
    allowed_roots: tuple[Path, ...]
    registry: ToolRegistry = field(init=False)
    artifacts: dict[str, Path] = field(default_factory=dict)
    _agent: Any = None

    def __post_init__(self) -> None:
        self.registry = ToolRegistry(self.settings)
        self.allowed_roots = tuple(r.expanduser().resolve() for r in self.allowed_roots)

    # --- access ----------------------------------------------------------------------------
    def check_path(self, path: Path) -> Path:
        resolved = path.expanduser().resolve()
        if not any(resolved == root or root in resolved.parents for root in self.allowed_roots):
            roots = ", ".join(map(str, self.allowed_roots))
            raise PathNotAllowedError(f"パス {path} は許可されたフォルダ（{roots}）の外にあるため読めません。")
        return resolved

    # --- listing ---------------------------------------------------------------------------
    def tool_specs(self) -> list[types.Tool]:
        specs = [types.Tool(name=t.name, description=f"{t.description_en}\n{t.description_ja}",
                            input_schema=t.Input.model_json_schema(), output_schema=None)
                 for t in self.registry.tools()]
        specs.append(types.Tool(name=ASK_TOOL, input_schema=ASK_SCHEMA, description=(
            "Ask dokuei's agent a clinical question in Japanese; it routes to the tools and returns a cited, "
            "verified Japanese answer.\n質問を日本語で受け取り、ツールを選んで根拠付きの回答を返す。")))
        return specs

    # --- calling ---------------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """Run one call synchronously (the async handler runs this in a worker thread)."""
        try:
            if name == ASK_TOOL:
                payload = self._ask(arguments)
                summary = str(payload["answer_ja"])
                error = False
            else:
                result = self._run_tool(name, arguments)
                payload = self._result_payload(result)
                summary, error = result.summary_ja, not result.ok
        except PathNotAllowedError as exc:
            log.warning("mcp %s refused: %s", name, exc)
            payload, summary, error = {"status": "failed", "summary_ja": str(exc)}, str(exc), True
        except KeyError:
            summary = f"ツール {name} は登録されていません。"
            payload, error = {"status": "failed", "summary_ja": summary}, True
        self._audit(name, arguments, payload)
        return types.CallToolResult(content=[types.TextContent(text=summary)], structured_content=payload,
                                    is_error=error)

    def _run_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        tool: Tool = self.registry.get(name)
        try:
            validated = tool.Input.model_validate(arguments)
        except ValidationError:
            return tool(arguments)  # the tool itself turns a bad input into a failed result in Japanese
        for path in _paths_in(validated):
            self.check_path(path)
        return tool(validated)

    def _ask(self, arguments: dict[str, Any]) -> dict[str, Any]:
        question = str(arguments.get("question", ""))
        attachments = [str(self.check_path(Path(p))) for p in arguments.get("attachments") or []]
        patient = dict(arguments.get("patient") or {})
        if self._agent is None:
            from dokuei.agent.graph import Agent

            self._agent = Agent(self.settings)
        turn = self._agent.ask(question, attachments=attachments, patient=patient)
        payload: dict[str, Any] = turn.to_json()
        from dokuei.export.turns import store_turn

        payload["turn_id"] = store_turn(self.settings, payload, question, [r.sha256() for r in turn.results])
        for call in payload["tool_calls"]:
            call["artifacts"] = [self._serve(a) for a in call.get("artifacts", [])]
        return payload

    def _result_payload(self, result: ToolResult) -> dict[str, Any]:
        payload = result.model_dump(mode="json", exclude={"error_detail"})
        payload["artifacts"] = [self._serve(a) for a in payload.get("artifacts", [])]
        return payload

    def _serve(self, artifact: dict[str, Any]) -> dict[str, Any]:
        """Replace a server file path by a resource URI the client can read."""
        path = Path(str(artifact.get("path", "")))
        key = hashlib.sha256(str(path).encode()).hexdigest()[:16]
        uri = f"dokuei-artifact://{key}/{path.name}"
        self.artifacts[uri] = path
        return {**{k: v for k, v in artifact.items() if k != "path"}, "uri": uri}

    def _audit(self, name: str, arguments: dict[str, Any], payload: dict[str, Any]) -> None:
        record = {"channel": "mcp", "tool": name,
                  "arguments_sha256": hashlib.sha256(repr(sorted(arguments.items())).encode()).hexdigest(),
                  "status": payload.get("status", "ok" if "answer_ja" in payload else "?"),
                  "input_sha256": (payload.get("provenance") or {}).get("input_sha256", "")}
        try:
            audit.append(self.settings.audit_dir, record, self.settings.audit_hmac_key)
        except OSError:
            log.exception("mcp audit record could not be written")

    # --- resources -------------------------------------------------------------------------
    def resource_list(self) -> list[types.Resource]:
        return [types.Resource(uri=uri, name=path.name, mime_type=mimetypes.guess_type(path.name)[0])
                for uri, path in self.artifacts.items()]

    def read(self, uri: str) -> types.ReadResourceResult:
        path = self.artifacts.get(uri)
        if path is None or not path.is_file():
            raise ValueError(f"resource {uri} is not an artifact of this server")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        blob = base64.b64encode(path.read_bytes()).decode()
        return types.ReadResourceResult(contents=[types.BlobResourceContents(uri=uri, mime_type=mime, blob=blob)])


def build_server(settings: Settings, allowed_roots: list[Path]) -> tuple[Server[Any], DokueiMcp]:
    state = DokueiMcp(settings, tuple(allowed_roots))

    async def list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                         ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=state.tool_specs())

    async def call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                        ) -> types.CallToolResult:
        arguments = dict(params.arguments or {})
        return await anyio.to_thread.run_sync(state.call, params.name, arguments)

    async def list_resources(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                             ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=state.resource_list())

    async def read_resource(ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
                            ) -> types.ReadResourceResult:
        return state.read(str(params.uri))

    server: Server[Any] = Server("dokuei", version=__version__, instructions=(
        "dokuei: on-premises Japanese clinical tools. Results carry status, summary_ja, citations and provenance."),
        on_list_tools=list_tools, on_call_tool=call_tool, on_list_resources=list_resources,
        on_read_resource=read_resource)
    return server, state


def serve_stdio(settings: Settings, allowed_roots: list[Path]) -> None:
    from mcp.server.stdio import stdio_server

    server, _ = build_server(settings, allowed_roots)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)


def serve_http(settings: Settings, allowed_roots: list[Path], host: str = "127.0.0.1", port: int = 8765) -> None:
    if host not in _LOOPBACK:
        raise ValueError("dokuei mcp --http serves on loopback only (127.0.0.1, localhost, ::1)")
    import uvicorn

    server, _ = build_server(settings, allowed_roots)
    app = server.streamable_http_app(host=host)
    uvicorn.run(app, host=host, port=port, log_level="warning")
