#!/usr/bin/env bash
# prefloop's two set-up commands for a fresh machine (see README):
#   ./run.sh demo [options for `prefloop demo`]   install once, then run the demo pipeline
#   ./run.sh test [options for pytest]            install once (+ test services), run the tests
# The virtual environment lives in $PREFLOOP_VENV (default .venv). PyTorch is installed first
# from $PREFLOOP_TORCH (default torch==2.13.0, the CPU build this machine kind carries), so no
# other requirement can pull a multi-GB CUDA build; set it to your own spec on a GPU machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
venv="${PREFLOOP_VENV:-.venv}"
torch_spec="${PREFLOOP_TORCH:-torch==2.13.0}"

install() {
  [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
  local stamp="$venv/.prefloop-installed"
  local want
  want="$(cat pyproject.toml; echo "$torch_spec")"
  if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "run.sh: installing prefloop into $venv (first run takes a minute or two)"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q "$torch_spec"
    "$venv/bin/python" -m pip install -q -e ".[serve,dev]"
    printf '%s' "$want" >"$stamp"
  fi
}

command="${1:-}"
shift || true
case "$command" in
  demo)
    install
    exec "$venv/bin/prefloop" demo "$@"
    ;;
  test)
    install
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      bash .ci/services.sh
      # shellcheck disable=SC1091
      source .ci/services.env
    else
      echo "run.sh: not root; PostgreSQL and browser tests need .ci/services.sh (they skip here)"
    fi
    exec "$venv/bin/python" -m pytest -q "$@"
    ;;
  *)
    echo "usage: ./run.sh demo [--out DIR] [--seed N] [--fast] | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
