#!/usr/bin/env bash
# The main job on the embedded default: builds gitward, then points it at this
# repository's own manifests/examples with the process backend. No server to
# start: the repo is read over libgit2's local transport.
set -euo pipefail
cd "$(dirname "$0")/.."
contrib/install-deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_TESTS=OFF >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
gw=build/agent/gitward
state=${GITWARD_STATE_DIR:-/var/lib/gitward-demo}

echo "== gitward validate manifests/examples"
$gw validate manifests/examples
echo
echo "== gitward reconcile --dry-run (repo: $PWD, path: manifests/examples)"
set +e
$gw reconcile --dry-run --repo "$PWD" --path manifests/examples --state-dir "$state"
rc=$?
set -e
echo "(exit $rc: 0 = node matches the commit, 2 = changes pending)"
[[ $rc == 0 || $rc == 2 ]]
