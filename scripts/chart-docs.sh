#!/usr/bin/env bash
# Regenerates the chart's reference docs from the `## @param` comments in charts/vision-ai/values.yaml:
#   charts/vision-ai/README.md         the "## Parameters" section (the prose around it is kept)
#   charts/vision-ai/values.schema.json types, defaults and descriptions, plus the validation in
#                                      scripts/chart-docs/schema-constraints.json (augment_schema.py)
# The generator is bitnami's readme-generator-for-helm, pinned with its whole dependency tree by
# scripts/chart-docs/package-lock.json and installed (once, then reused) outside the repository.
#   usage: scripts/chart-docs.sh [--check]
#   --check  generate into a temporary copy and fail, showing the diff, when the committed files
#            differ (tests/charts/test_chart_docs.py runs it in CI)
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

chart=charts/vision-ai
pins=scripts/chart-docs
python=${PYTHON:-$(command -v python3 || command -v python)}
command -v npm >/dev/null || { echo "chart-docs: npm not found (needed to install the generator)" >&2; exit 3; }

# One cache directory per lockfile content: a changed pin installs afresh, an unchanged one is reused.
lock_id=$(sha256sum "$pins/package-lock.json" | cut -c1-12)
cache=${VISION_CHART_DOCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vision-ai/readme-generator}/$lock_id
generator=$cache/node_modules/@bitnami/readme-generator-for-helm/bin/index.js
if [ ! -f "$generator" ]; then
  echo "chart-docs: installing the generator into $cache" >&2
  # Installed beside the cache and renamed into place, so a concurrent or interrupted run never
  # sees a half-installed tree.
  mkdir -p "$(dirname "$cache")"
  staging=$(mktemp -d "$cache.XXXXXX")
  cp "$pins/package.json" "$pins/package-lock.json" "$staging/"
  npm ci --prefix "$staging" --ignore-scripts --no-audit --no-fund --loglevel=error >&2
  rm -rf "$cache"
  mv -T "$staging" "$cache" 2>/dev/null || rm -rf "$staging"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$chart/README.md" "$tmp/README.md"
# The generator logs every value it skips; only its errors matter (it exits non-zero on them).
if ! node "$generator" --values "$chart/values.yaml" --readme "$tmp/README.md" \
    --schema "$tmp/generated.schema.json" >"$tmp/generator.log" 2>&1; then
  cat "$tmp/generator.log" >&2
  exit 1
fi
"$python" "$pins/augment_schema.py" "$tmp/generated.schema.json" "$pins/schema-constraints.json" \
  "$tmp/values.schema.json"

if ! $check; then
  cp "$tmp/README.md" "$chart/README.md"
  cp "$tmp/values.schema.json" "$chart/values.schema.json"
  exit 0
fi
status=0
for f in README.md values.schema.json; do
  if ! diff -u --label "$chart/$f (committed)" --label "$chart/$f (generated)" "$chart/$f" "$tmp/$f"; then
    status=1
  fi
done
if [ "$status" != 0 ]; then
  echo "chart-docs: $chart/README.md or values.schema.json is stale: run scripts/chart-docs.sh" >&2
fi
exit "$status"
