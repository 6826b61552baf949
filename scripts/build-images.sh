#!/usr/bin/env bash
# Builds vision-ai-backend:<version> and vision-ai-frontend:<version> from the repository root
# (version = visionctl.__version__), passing OCI label metadata. Layers are cached: a rebuild with
# unchanged requirements/ only re-copies code and models.
#   usage: [BASE_IMAGE=python:3.11-slim] scripts/build-images.sh [backend|frontend]...
#   offline: BASE_IMAGE=$(../shared/tools/offline-base-image.sh) scripts/build-images.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' backend/contract.py)
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Commit time, not build time: same commit, same labels (reproducible metadata).
created=$(git log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
base=${BASE_IMAGE:-python:3.11-slim}
[ $# -gt 0 ] || set -- backend frontend
for component in "$@"; do
  case $component in backend|frontend) ;; *) echo "unknown image: $component" >&2; exit 2;; esac
  start=$(date +%s)
  docker build -f "Dockerfile.$component" -t "vision-ai-$component:$version" \
    --build-arg BASE_IMAGE="$base" --build-arg VERSION="$version" \
    --build-arg REVISION="$revision" --build-arg CREATED="$created" .
  echo "built vision-ai-$component:$version in $(( $(date +%s) - start ))s" >&2
done
