#!/usr/bin/env bash
# Installs the foreign Redlock clients that `cargo test -p redlock-redis-rs --test interop`
# runs, at the versions pinned beside this script, into target/interop (git-ignored) or
# $REDLOCK_INTEROP_DIR: a Python venv with requirements.txt, and node_modules from
# package-lock.json. Needs python3 (with venv and pip), node and npm; reaches PyPI and npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${REDLOCK_INTEROP_DIR:-$here/../../../target/interop}"

for tool in python3 node npm; do
    command -v "$tool" >/dev/null 2>&1 || { echo "interop: $tool not found; install it first" >&2; exit 1; }
done
mkdir -p "$dir/node"
dir="$(cd "$dir" && pwd)"
python3 -m venv "$dir/venv"
"$dir/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/package.json" "$here/package-lock.json" "$dir/node/"
npm ci --prefix "$dir/node" --no-audit --no-fund --loglevel=error
echo "interop clients installed in $dir"
