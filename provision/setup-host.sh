#!/usr/bin/env bash
# Set up this machine (Debian/Ubuntu, as root) to run chaoslab and its tests:
# the Debian packages of the netns lab and of provision/host-packages, a virtualenv
# in .venv, and the package itself. Safe to run again: what is there is not fetched again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t host_packages < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' provision/host-packages)
bash provision/install.sh --role lab -- "${host_packages[@]}"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
