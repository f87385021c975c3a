#!/usr/bin/env bash
# Copy the history's run files onto a branch (default: benchmark-history) and push it.
# Optional third copy of the history, next to the runner's disk and the workflow artifacts.
#   scripts/push-history.sh HISTORY_DIR [BRANCH]
set -euo pipefail
history=${1:?usage: push-history.sh HISTORY_DIR [BRANCH]}
branch=${2:-benchmark-history}
work=$(mktemp -d)
trap 'git worktree remove --force "$work" >/dev/null 2>&1 || rm -rf "$work"' EXIT

git fetch origin "$branch" 2>/dev/null || true
if git show-ref --verify --quiet "refs/remotes/origin/$branch"; then
  git worktree add --force -B "$branch" "$work" "origin/$branch"
else
  git worktree add --force --detach "$work"
  git -C "$work" checkout --orphan "$branch"
  git -C "$work" rm -rf --quiet . || true
fi
mkdir -p "$work/history"
# numbered pytest-benchmark files only: never partial files or locks
find "$history" -name '[0-9][0-9][0-9][0-9]_*.json' -exec cp --parents -t "$work/history" {} + 2>/dev/null \
  || (cd "$history" && find . -name '[0-9][0-9][0-9][0-9]_*.json' -exec cp --parents {} "$work/history" \;)
git -C "$work" add history
if git -C "$work" diff --cached --quiet; then
  echo "benchmark history: nothing new"
  exit 0
fi
git -C "$work" -c user.name="fbcache nightly" -c user.email="fbcache-nightly@users.noreply.github.com" \
  commit --quiet -m "history: $(date -u +%Y-%m-%dT%H:%MZ)"
git -C "$work" push --quiet origin "$branch"
echo "benchmark history: pushed to $branch"
