#!/bin/sh
# The review step of a merge request, shared by the GitHub Actions workflow
# and the GitLab CI job beside it (and run as is by tests/e2e/test_review.py):
# validate the manifests of the work tree, then write the plan of every node
# of the inventory, merge base against head, as markdown for a comment.
#
#   gitward-plan.sh TARGET_BRANCH_REF [OUT_FILE]
#
# Environment: GITWARD (the binary, default gitward), GITWARD_NODES (the
# inventory, default gitward-nodes.yaml: list it in .gitwardignore),
# GITWARD_VALIDATE_OUTPUT (text or github), GITWARD_STATE_DIR (the Git cache,
# default $TMPDIR/gitward-ci). Exit 0 with the plan written, 1 on a problem.
set -eu
target="$1"
out="${2:-gitward-plan.md}"
gw="${GITWARD:-gitward}"
nodes="${GITWARD_NODES:-gitward-nodes.yaml}"
state="${GITWARD_STATE_DIR:-${TMPDIR:-/tmp}/gitward-ci}"

"$gw" validate --output "${GITWARD_VALIDATE_OUTPUT:-text}" .

# CI checkouts are detached: name both commits so the fetch of this
# repository sees them
base="$(git merge-base "$target" HEAD)"
git branch -f gitward-ci-base "$base" >/dev/null
git branch -f gitward-ci-head HEAD >/dev/null

set +e
"$gw" diff --repo . --state-dir "$state" --base gitward-ci-base --ref gitward-ci-head --nodes "$nodes" \
	--output markdown >"$out"
rc=$?
set -e
# 0: nothing changes, 2: changes (both are a plan to post), 1: a problem
[ "$rc" -ne 1 ] || exit 1
exit 0
