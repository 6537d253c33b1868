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
  extras="[local]"   # no model configured: the offline local model (llama.cpp builds in ~5-9 min)
fi

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [[ "$extras" == "[test]" ]]; then
  command -v chromium >/dev/null || missing+=(chromium)   # the panel's browser test
  command -v openssl >/dev/null || missing+=(openssl)     # a certificate for the egress HTTPS test
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
  (cd labextension && npm install --no-audit --no-fund --loglevel=error && npm run build)
fi

if [[ "$extras" == "[local]" && "$(uname -m)" == "x86_64" && -z "${CMAKE_ARGS:-}" ]]; then
  # llama.cpp's default -march=native build can use instructions (AMX) that a VM's CPU
  # advertises but its kernel does not enable: the server then dies with SIGILL. AVX2 runs
  # on every x86-64 machine of the last decade and is what decoding needs.
  export CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
fi

say "installing kernelagent${extras}"
python3 -m pip install -q --disable-pip-version-check -e ".${extras}"

say "building the sandbox image (first time: ~3 minutes, from Debian's packages)"
as_root "$(command -v kernelagent)" image build
