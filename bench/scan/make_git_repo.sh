#!/usr/bin/env bash
# Build a repository with real history for the `--git` benchmark: one commit per crate in the
# local cargo registry (sorted by name and version, so a crate's newer version replaces the
# older one under the same path, giving real diffs), then a few keys committed and deleted,
# then `git gc` so most objects sit in a pack, as in any cloned repository.
#
#   bench/scan/make_git_repo.sh OUT_DIR
set -euo pipefail
out=${1:?usage: make_git_repo.sh OUT_DIR}
src=$(ls -d ~/.cargo/registry/src/*/ | head -1)
rm -rf "$out" && mkdir -p "$out" && cd "$out"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com
git init -q -b main
git config gc.auto 0   # no background gc racing the final one
i=0
for crate in $(ls "$src" | sort -V); do
  name=$(echo "$crate" | sed -E 's/-[0-9]+\.[0-9]+\.[0-9]+.*$//')
  rm -rf "vendor/$name" && mkdir -p "vendor/$name" && cp -r "$src/$crate/." "vendor/$name/"
  # Nested .git folders or ignore files in crates must not change what is committed.
  find "vendor/$name" -name .git -prune -exec rm -rf {} + 2>/dev/null || true
  git add -A -f "vendor/$name" && git commit -q -m "vendor $crate" --allow-empty
  i=$((i + 1))
  if [ $((i % 100)) -eq 0 ]; then
    key="tskey-auth-kBench$(printf %03d $i)CNTRL-$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)"
    echo "TS_AUTHKEY=$key" > leaked.env && git add leaked.env && git commit -q -m "oops"
    git rm -q leaked.env && git commit -q -m "remove leaked key"
  fi
done
git gc -q
echo "$(git rev-list --all | wc -l) commits in $out"
