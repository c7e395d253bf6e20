#!/usr/bin/env bash
# The main job on the embedded default: build gitward, then point it at this
# repository's own manifests/examples with the process backend and show it
# converge. No server to start: the repo is read over libgit2's local
# transport. Container and VM examples carry a nodeSelector this node does not
# match, so only the Process examples run here.
set -euo pipefail
cd "$(dirname "$0")/.."
contrib/install-deps.sh build
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DGW_TESTS=OFF >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
gw=$PWD/build/agent/gitward
state=${GITWARD_STATE_DIR:-/var/lib/gitward-demo}
opts=(--repo "$PWD" --path manifests/examples --state-dir "$state")

step() { printf '\n== %s\n' "$*"; }
step "gitward validate manifests/examples"
$gw validate manifests/examples
step "gitward reconcile --dry-run   (exit 0: in sync, 2: changes pending)"
$gw reconcile --dry-run "${opts[@]}" || [[ $? == 2 ]]
step "gitward reconcile             (apply; exit 0 only when converged and healthy)"
$gw reconcile "${opts[@]}"
step "gitward status"
$gw status --state-dir "$state"
step "gitward reconcile --dry-run   (again: nothing to do)"
$gw reconcile --dry-run "${opts[@]}"
cat <<EOT

The example processes keep running under gitward's supervisors (logs in $state/logs).
Run the agent:   $gw agent ${opts[*]} --interval 10s
Remove them:     $gw reconcile --repo $PWD --path manifests/schema --state-dir $state --allow-empty
EOT
