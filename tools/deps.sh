#!/bin/sh
# Install the Debian packages contextpool-c needs, if any is missing.
# As root: apt-get installs them. Otherwise: print the exact command to run, and fail.
# Set CPOOL_NO_DEPS=1 to skip this check (e.g. on a machine you manage yourself).
[ "${CPOOL_NO_DEPS:-0}" = 1 ] && exit 0

PACKAGES="gcc make libc6-dev libcmocka-dev gnuplot-nox zlib1g-dev libcjson-dev bible-kjv dataset-fashion-mnist"

missing=""
for package in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)
    [ "$status" = "install ok installed" ] || missing="$missing $package"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "contextpool-c needs these Debian packages:$missing" >&2
    echo "run:  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq $missing >/dev/null || {
    echo "deps: apt-get install failed for:$missing" >&2
    exit 1
}
