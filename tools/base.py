"""The tool contract: typed input/output, declared requirements, lazy setup, results as objects.

A tool is one file in ``tools/``: a subclass of :class:`Tool` with pydantic ``Input`` and ``Output``
models (units in field names), a :class:`Requirements` declaration, ``setup()`` for loading and
``run()`` for computing. Calling a tool never raises: it returns a :class:`ToolResult` whose status is
``ok``, ``failed`` (bad input, an error while computing) or ``unavailable`` (weights, GPU or a licence
missing), with a Japanese summary and a provenance record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
import uuid
from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dokuei import __version__
from dokuei.device import cuda_available, gpu_present
from dokuei.device import importable as _importable
from dokuei.errors import InputError, UnavailableError
from dokuei.settings import Settings
from dokuei.tools.context import ToolContext
from dokuei.weights import WeightsCheck, WeightSpec, check_weights, sha256_file

log = logging.getLogger(__name__)

#: (sha256 of this call's input files, call id), set by ``Tool.__call__`` for ``artifact_dir``
_CALL_KEY: ContextVar[tuple[str, str]] = ContextVar("dokuei_tool_call_key", default=("", ""))


class ToolStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"
    UNAVAILABLE = "unavailable"


class Requirements(BaseModel):
    """What a tool needs before it can run. Checked without importing torch."""

    model_config = ConfigDict(frozen=True)

    device: Literal["cpu", "cuda", "cuda_preferred"] = Field(
        description="cpu: runs on CPU only; cuda: needs a GPU; cuda_preferred: GPU when present, else CPU"
    )
    min_vram_gb: float = Field(default=0.0, ge=0, description="GPU memory needed on CUDA, GiB")
    weights: tuple[WeightSpec, ...] = Field(default=(), description="model weights read from the weights dir")
    licence: str = Field(description="licence of the tool's method, data or weights (SPDX id or text)")
    python_packages: tuple[str, ...] = Field(default=(), description="import names needed beyond the core")


class Artifact(BaseModel):
    """A file a tool wrote: an overlay image, a plot, a JSON table."""

    path: str
    kind: Literal["image", "json", "table", "nifti", "other"]
    caption_ja: str


class Citation(BaseModel):
    """Something an answer can cite: a tool result or a source document (a report)."""

    id: str = Field(description="stable id, e.g. 'judge_checkup' or 'report:R000123'")
    kind: Literal["tool_result", "report", "reference"] = Field(
        description="tool_result: a tool's own output; report: an archived report quoted as evidence; "
        "reference: the published criteria or guideline a tool applied (listed, not quoted)")
    label_ja: str = Field(description="how the citation is listed under the answer")
    text: str = Field(default="", description="the passage or summary the citation stands for")


class Provenance(BaseModel):
    """Everything needed to reproduce or audit one tool run."""

    tool: str
    tool_version: str
    dokuei_version: str = __version__
    model_version: str | None = None
    weights_sha256: dict[str, str] = Field(default_factory=dict)
    device: str = "cpu"
    input_sha256: str = ""
    file_sha256: dict[str, str] = Field(default_factory=dict, description="hash of every input file")
    parameters: dict[str, Any] = Field(default_factory=dict)
    started_utc: datetime = Field(default_factory=lambda: datetime.now(UTC))
    runtime_s: float = 0.0


class ToolResult(BaseModel):
    """What every tool call returns. The agent, the UI and the audit log read this object."""

    tool: str
    status: ToolStatus
    input: dict[str, Any] | None = Field(default=None, description="the validated input the tool ran on")
    output: dict[str, Any] | None = None
    summary_ja: str
    error_detail: str | None = Field(default=None, description="technical detail for the log, not the user")
    artifacts: list[Artifact] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    provenance: Provenance
    call_id: str = Field(default="", description="the planned call this result answers (set by the agent)")

    @property
    def ok(self) -> bool:
        return self.status is ToolStatus.OK

    def compact_json(self) -> str:
        """What an LLM sees: status, summary and output, without provenance."""
        payload = {"tool": self.tool, "status": self.status.value, "summary_ja": self.summary_ja,
                   "output": self.output, "citations": [c.id for c in self.citations]}
        return json.dumps(payload, ensure_ascii=False, default=str)

    def sha256(self) -> str:
        return hashlib.sha256(self.model_dump_json(exclude={"provenance", "call_id"}).encode()).hexdigest()


#: the domain errors under the names tools have always used: the same classes, not subclasses, so a
#: reader raising ``InputError`` is caught by ``except ToolInputError`` and vice versa
ToolInputError = InputError
ToolUnavailableError = UnavailableError


@dataclass
class Outcome:
    """What ``run()`` returns; the base class wraps it into a :class:`ToolResult`."""

    output: BaseModel
    summary_ja: str
    artifacts: list[Artifact] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    model_version: str | None = None


@dataclass(frozen=True)
class Availability:
    status: ToolStatus
    reason_ja: str
    weights: tuple[WeightsCheck, ...] = ()


InputT = TypeVar("InputT", bound=BaseModel)


class Tool(ABC, Generic[InputT]):
    """Base class of every tool. Subclasses set the class attributes and implement ``run``."""

    name: ClassVar[str]
    version: ClassVar[str]
    title_ja: ClassVar[str] = ""  # what a clinician reads in place of the tool's name
    description_ja: ClassVar[str]
    description_en: ClassVar[str]
    Input: ClassVar[type[BaseModel]]
    Output: ClassVar[type[BaseModel]]
    requires: ClassVar[Requirements]
    #: phrases that route a question to this tool in the deterministic planner: the ONLY routing
    #: vocabulary; ``input_from_context`` assembles an input and never re-decides whether the tool fits
    keywords_ja: ClassVar[tuple[str, ...]] = ()
    #: the same for English questions (matched case-insensitively, whole words for ASCII phrases)
    keywords_en: ClassVar[tuple[str, ...]] = ()
    #: tools this one replaces when both are planned in a turn (precedence, declared as data)
    supersedes: ClassVar[tuple[str, ...]] = ()
    #: planned whenever one of its ``attachment_kinds`` is attached, even without a keyword
    #: (the tool a bare "この心電図の所見は？" means)
    runs_on_attachment: ClassVar[bool] = False
    #: what to attach or write when the tool fits but its input cannot be built, as an ask
    #: ("… を添付してください"); empty: derived from ``attachment_kinds``
    needs_ja: ClassVar[str] = ""
    #: attachment kinds (see agent.attachments) this tool consumes
    attachment_kinds: ClassVar[tuple[str, ...]] = ()
    #: tools whose results (same turn) this tool reads from ``ToolContext.results``; it runs after them
    depends_on: ClassVar[tuple[str, ...]] = ()
    #: runs in a worker process (``tools/worker.py``) where a timeout kills it: CT, model inference.
    #: Light tools (text, tables, search) stay in the agent's process, where starting nothing is faster
    heavy: ClassVar[bool] = False

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self._ready = False
        self.device = "cpu"

    # --- to implement -------------------------------------------------------------------------
    def setup(self) -> None:
        """Load models or data. Called once, on first use, after availability was checked."""

    @abstractmethod
    def run(self, inp: InputT) -> Outcome:
        """Compute. Raise ToolInputError for bad input; anything else becomes a failed result."""

    def input_from_context(self, ctx: ToolContext) -> InputT | None:
        """Build an input from a question, attachments and patient context, or None if not applicable.

        Used by the deterministic planner once it has decided (from ``keywords_ja``/``keywords_en``)
        that the tool fits; return None only when the input cannot be assembled (no file of the right
        kind, no value to read). LLM planners fill ``Input`` directly from its JSON schema.
        """
        return None

    # --- provided -----------------------------------------------------------------------------
    def availability(self) -> Availability:
        """Whether the tool can run here, and if not, why and how to fix it. Imports no torch."""
        checks = tuple(check_weights(spec, self.settings.weights_root) for spec in self.requires.weights)
        missing = [c for c in checks if not c.ok]
        if missing:
            reason = " / ".join(c.reason_ja for c in missing)
            return Availability(ToolStatus.UNAVAILABLE, reason, checks)
        absent = [pkg for pkg in self.requires.python_packages if not _importable(pkg)]
        if absent:
            return Availability(
                ToolStatus.UNAVAILABLE,
                f"必要なパッケージ {', '.join(absent)} がインストールされていません"
                f"（pip install 'dokuei[models]' で導入できます）。",
                checks,
            )
        if self.requires.device == "cuda" and not gpu_present():
            reason = "このツールは GPU（CUDA）が必要ですが、見つかりません。"
            return Availability(ToolStatus.UNAVAILABLE, reason, checks)
        return Availability(ToolStatus.OK, "利用可能", checks)

    def resolve_device(self) -> str:
        if self.requires.device == "cpu" or self.settings.device == "cpu":
            return "cpu"
        if self.settings.device == "cuda" or cuda_available():
            return "cuda"
        return "cpu"

    def __call__(self, raw: BaseModel | dict[str, Any], **parameters: Any) -> ToolResult:
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        prov = Provenance(tool=self.name, tool_version=self.version, started_utc=started, parameters=parameters)
        try:
            inp = raw if isinstance(raw, self.Input) else self.Input.model_validate(raw)
        except ValidationError as exc:
            log.warning("tool %s: invalid input: %s", self.name, exc)
            prov.input_sha256 = _sha256_json(raw if isinstance(raw, dict) else {})
            return self._result(ToolStatus.FAILED, prov, t0, summary_ja=_validation_ja(exc), detail=str(exc))
        input_json = inp.model_dump(mode="json")
        prov.input_sha256 = _sha256_json(input_json)
        try:
            prov.file_sha256 = hash_input_files(inp)
        except ToolInputError as exc:  # too large to hash, or a named pipe: refuse before running
            log.warning("tool %s: %s", self.name, exc.detail)
            return self._result(ToolStatus.FAILED, prov, t0, summary_ja=exc.message_ja, detail=exc.detail,
                                input_json=input_json)
        _CALL_KEY.set((_sha256_json(prov.file_sha256), uuid.uuid4().hex[:12]))
        availability = self.availability()
        prov.weights_sha256 = {c.spec.id: c.sha256 for c in availability.weights if c.sha256}
        if availability.status is not ToolStatus.OK:
            return self._result(ToolStatus.UNAVAILABLE, prov, t0, summary_ja=availability.reason_ja,
                                input_json=input_json)
        try:
            if not self._ready:
                self.device = self.resolve_device()
                self.setup()
                self._ready = True
            prov.device = self.device
            outcome = self.run(inp)  # type: ignore[arg-type]
        except ToolInputError as exc:
            log.info("tool %s: bad input: %s", self.name, exc.detail)
            return self._result(ToolStatus.FAILED, prov, t0, summary_ja=exc.message_ja, detail=exc.detail,
                                input_json=input_json)
        except ToolUnavailableError as exc:
            log.warning("tool %s: unavailable: %s", self.name, exc.detail)
            return self._result(ToolStatus.UNAVAILABLE, prov, t0, summary_ja=exc.message_ja, detail=exc.detail,
                                input_json=input_json)
        except Exception as exc:  # a failure is a result, never a stack trace for the user
            log.exception("tool %s failed", self.name)
            return self._result(
                ToolStatus.FAILED, prov, t0,
                summary_ja=f"{self.name} の実行中にエラーが発生しました（{type(exc).__name__}）。"
                "詳細はログを確認してください。",
                detail="".join(traceback.format_exception(exc)), input_json=input_json,
            )
        prov.model_version = outcome.model_version
        result = self._result(ToolStatus.OK, prov, t0, summary_ja=outcome.summary_ja,
                              output=outcome.output.model_dump(mode="json"), input_json=input_json)
        result.artifacts = outcome.artifacts
        result.citations = [self.self_citation(outcome.summary_ja), *outcome.citations]
        return result

    def artifact_dir(self, inp: BaseModel) -> Path:
        """``$DOKUEI_HOME/artifacts/<tool>/<content hash>-<call id>/``: one private folder per call.

        Keyed by the sha256 of the input files' contents (not their paths: another patient's file at the
        same path must not overwrite this one's plot) and by a per-call id, so the file an earlier answer
        links to never changes. Outside ``__call__`` the input's JSON stands in for the content hash.
        """
        files_key, call_id = _CALL_KEY.get()
        content = files_key or hashlib.sha256(inp.model_dump_json().encode()).hexdigest()
        path = self.settings.artifacts_dir / self.name / f"{content[:16]}-{call_id or uuid.uuid4().hex[:12]}"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def self_citation(self, summary_ja: str) -> Citation:
        return Citation(id=self.name, kind="tool_result", label_ja=f"{self.title_ja or self.name}（v{self.version}）",
                        text=summary_ja)

    def _result(self, status: ToolStatus, prov: Provenance, t0: float, *, summary_ja: str,
                detail: str | None = None, output: dict[str, Any] | None = None,
                input_json: dict[str, Any] | None = None) -> ToolResult:
        prov.runtime_s = round(time.perf_counter() - t0, 4)
        return ToolResult(tool=self.name, status=status, input=input_json, output=output, summary_ja=summary_ja,
                          error_detail=detail, provenance=prov)


def _sha256_json(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


#: limits on what provenance hashes for one tool input (a path pointing at /usr must not take a minute)
MAX_HASH_FILES = 20000
MAX_HASH_BYTES = 4 << 30


def _too_big(path: Path, what: str) -> ToolInputError:
    return ToolInputError(
        f"{path.name} は大きすぎます（{what}）。1 検査分のファイルかフォルダを指定してください。",
        f"{path}: {what}; limits {MAX_HASH_FILES} files, {MAX_HASH_BYTES} bytes",
    )


def sha256_path(path: Path) -> str:
    """A file's sha256, or for a folder the sha256 of its sorted (relative path, sha256) listing.

    Sizes are checked before anything is read: over MAX_HASH_FILES files or MAX_HASH_BYTES bytes, or a
    path that is neither a regular file nor a folder (a named pipe would block), raises ToolInputError.
    """
    if path.is_file():
        if path.stat().st_size > MAX_HASH_BYTES:
            raise _too_big(path, f"{path.stat().st_size / 2**30:.1f} GB")
        return sha256_file(path)
    if not path.is_dir():
        raise ToolInputError(
            f"{path.name} は通常のファイルでもフォルダでもありません（名前付きパイプなど）。",
            f"not a regular file or folder: {path}",
        )
    files: list[Path] = []
    total = 0
    for p in path.rglob("*"):
        if not p.is_file():
            continue
        files.append(p)
        total += p.stat().st_size
        if len(files) > MAX_HASH_FILES:
            raise _too_big(path, f"ファイル {MAX_HASH_FILES:,} 個超")
        if total > MAX_HASH_BYTES:
            raise _too_big(path, f"合計 {MAX_HASH_BYTES / 2**30:.0f} GB 超")
    listing = sorted(f"{p.relative_to(path).as_posix()} {sha256_file(p)}" for p in files)
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()


def hash_input_files(inp: BaseModel) -> dict[str, str]:
    """sha256 of every existing file or folder named by a Path field (also inside lists).

    Raises ToolInputError (from :func:`sha256_path`) when one is too large or not a regular file.
    """
    hashes: dict[str, str] = {}
    for name, value in inp:
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, Path) and item.exists():
                hashes[f"{name}:{item.name}"] = sha256_path(item)
    return hashes


def _validation_ja(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "入力"
        parts.append(f"{loc}（{err['msg']}）")
    return "入力が正しくありません: " + "、".join(parts)
