#!/usr/bin/env bash
# Set up this machine (Debian/Ubuntu, as root) to run chaoslab and its tests:
# the Debian packages of the netns lab and of the tests, a virtualenv in .venv,
# and the package itself. Safe to run again: what is there is not fetched again.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash provision/install.sh --role lab -- \
    iputils-ping curl shellcheck vagrant ruby python3-venv chromium \
    mmdebstrap fdisk qemu-utils qemu-system-x86 vagrant-libvirt libvirt-daemon-system dnsmasq-base \
    openssh-client
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
