#!/bin/sh
# Installs every build and test dependency of longmix from Debian packages. Idempotent: packages
# already present are left alone and apt is not touched at all when nothing is missing.
set -eu

PACKAGES="build-essential cmake pkg-config clang libclang-rt-14-dev
libmicrohttpd-dev libjansson-dev libzstd-dev libsodium-dev libcurl4-openssl-dev libsystemd-dev
libonig-dev libsnappy-dev liblz4-dev libbrotli-dev zlib1g-dev
zstd curl python3 python3-numpy python3-torch nodejs npm chromium nginx-light faketime strace"
# A one-node Slurm for tests/soak/slurm_index.py (the README's array + merge, issue #15).
PACKAGES="$PACKAGES slurmctld slurmd slurm-client munge"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node/npm may come from outside Debian (already on PATH); do not fight that installation.
case "$missing" in *nodejs*|*npm*)
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(printf '%s\n' $missing | grep -vx -e nodejs -e npm | tr '\n' ' ')
  fi;;
esac
missing=$(echo $missing)
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing $missing" >&2
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
