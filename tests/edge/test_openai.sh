#!/usr/bin/env bash
# Runs test_openai.py with the Python that has the `openai` package: the
# project's venv (scripts/setup installs openai and httpx[http2] there), or
# $HINGE_PYTHON. Skips (77) when neither has it.
#   test_openai.sh HINGE_EDGE HINGE SPLIT_GENERATE SHARED_DIR
set -uo pipefail
py=${HINGE_PYTHON:-${HINGE_CACHE:-$HOME/.cache/hinge}/venv/bin/python}
if ! "$py" -c 'import openai, httpx, h2' 2>/dev/null; then
  echo "skip: no Python with openai, httpx and h2 at $py (run scripts/setup)"
  exit 77
fi
smol=${HINGE_CACHE:-$HOME/.cache/hinge}/models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -z "${HINGE_SMOLLM2_MODEL:-}" ] && [ -f "$smol" ]; then export HINGE_SMOLLM2_MODEL=$smol; fi
exec timeout 240 "$py" "$(dirname "$0")/test_openai.py" "$@"
