#!/usr/bin/env bash
# Install the packages one node of the lab needs (or, with --role lab, the
# whole netns lab on one machine, plus any extra packages after --), with the distribution's
# package manager: apt on Debian/Ubuntu, dnf on the RHEL family. Packages
# already present are not fetched again, and when everything is there the
# package manager is not run at all (a VM may reach no network but the lab's).
# Nothing is started here: configure.sh renders the configs and starts the
# services.
#
#   install.sh --role loadbalancer|webserver|lab [--list] [-- EXTRA_PACKAGE...]
#
# --list prints the packages, one a line, and installs nothing.
set -euo pipefail

role=""
list=false
extra=()

usage() {
    echo "usage: $0 --role loadbalancer|webserver|lab [--list] [-- EXTRA_PACKAGE...]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --role) [ $# -ge 2 ] || usage; role="$2"; shift 2 ;;
        --list) list=true; shift ;;
        --) shift; extra=("$@"); break ;;
        *) usage ;;
    esac
done

# python3 runs render.py; iproute2/iproute and procps/procps-ng give ip,
# pgrep and sysctl, which configure.sh and the Keepalived check use.
if command -v apt-get >/dev/null 2>&1; then
    family=debian
    web_package=apache2
    tools=(iproute2 procps)
elif command -v dnf >/dev/null 2>&1; then
    family=rhel
    web_package=httpd
    tools=(iproute procps-ng)
else
    echo "install.sh: neither apt-get nor dnf found; cannot install packages" >&2
    exit 1
fi

case "$role" in
    loadbalancer) packages=(haproxy keepalived) ;;
    webserver) packages=("$web_package") ;;
    # the netns lab: every daemon on one machine, util-linux for setsid
    lab) packages=(haproxy keepalived "$web_package" util-linux) ;;
    *) usage ;;
esac
# iptables: link faults and VRRP partitions, on any node
packages+=(tcpdump iptables python3 "${tools[@]}" "${extra[@]}")

if [ "$list" = true ]; then
    printf '%s\n' "${packages[@]}"
    exit 0
fi

is_installed() {
    if [ "$family" = debian ]; then
        [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
    else
        rpm -q --quiet "$1"
    fi
}

missing=()
for package in "${packages[@]}"; do
    is_installed "$package" || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "install.sh: already installed: ${packages[*]}"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

echo "install.sh: installing ${missing[*]}"
if [ "$family" = debian ]; then
    # Debian starts a daemon as soon as its package is installed; a policy-rc.d
    # that answers 101 ("action forbidden") keeps them stopped. An existing
    # policy (the administrator's) is left as it is.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    dnf install -y -q "${missing[@]}"
fi
