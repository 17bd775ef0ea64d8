#!/usr/bin/env bash
# Commit a training run's logs and its latest checkpoint (only the latest: older ones leave the tree),
# so that a run cut off with its machine resumes in the next session with --resume.
# Usage: tools/commit_run.sh runs/NAME
set -euo pipefail
run="${1:?usage: tools/commit_run.sh runs/NAME}"
latest="$run/checkpoints/$(cat "$run/checkpoints/latest")"
git rm -r -q --cached --ignore-unmatch "$run/checkpoints" >/dev/null
git add -f "$latest" "$run/checkpoints/latest"
git add "$run"
git commit -q -m "Run $(basename "$run"): checkpoint $(basename "$latest") (logs and latest checkpoint, for --resume)" -- "$run"
echo "committed $latest"
