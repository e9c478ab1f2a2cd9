#!/usr/bin/env bash
# Wheels of the service's packages that a GPU machine's own Python may lack, at the versions of
# requirements/serve.lock, for scripts/gpu_check.sh to install where no registry can be reached.
# Usage: bash scripts/gpu_wheels.sh [DIR] [PYTHON_VERSION]   (default .whl 3.12; DIR is git-ignored
# only if you add it to .git/info/exclude)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.whl}
PYVER=${2:-3.12}
PACKAGES="fastapi starlette pydantic pydantic-core pydantic-settings python-dotenv annotated-types annotated-doc
typing-inspection typing-extensions uvicorn httptools prometheus-fastapi-instrumentator python-multipart
fastapi-offline anyio prometheus-client h11 opentelemetry-api"
pins=()
for name in $PACKAGES; do
    pin=$(grep -E "^$name==" requirements/serve.lock | cut -d' ' -f1)
    [ -n "$pin" ] || { echo "error: $name is not pinned in requirements/serve.lock" >&2; exit 2; }
    pins+=("$pin")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$DIR" "${pins[@]}"
