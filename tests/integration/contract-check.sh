#!/bin/sh
# Installs the build into a temporary prefix and runs ../shared/conformance/check-contract.sh on it
# (the interface of CONTRACT.md). Exit 77 (skipped) without ../shared.
set -eu
shared=${LMX_SHARED_DIR:?}
build=${LMX_BUILD_DIR:?}
if [ ! -x "$shared/conformance/check-contract.sh" ]; then
  echo "skipped: $shared/conformance/check-contract.sh not found"
  exit 77
fi
prefix=$(mktemp -d /tmp/lmx-contract-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
"$shared/conformance/check-contract.sh" "$prefix"
