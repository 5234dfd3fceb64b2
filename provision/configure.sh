#!/usr/bin/env bash
# Configure one node of the lab: render its files from topology.json into a root
# directory. On a VM the root is / and the services are then (re)started by the
# service manager; the netns lab calls this same step with a per-node root and
# starts the daemons itself.
#
#   configure.sh --node haproxy-1 [--profile seed] [--root /]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node=""
profile=""
root="/"

usage() {
    echo "usage: $0 --node NAME [--profile NAME] [--root DIR]" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --node) node="${2:-}"; shift 2 ;;
        --profile) profile="${2:-}"; shift 2 ;;
        --root) root="${2:-}"; shift 2 ;;
        *) usage ;;
    esac
done
[ -n "$node" ] || usage

args=(--node "$node" --root "$root")
[ -n "$profile" ] && args+=(--profile "$profile")
# On a machine of its own the VIP's interface is whichever holds the node's
# address on the VIP's network: its name depends on the box (eth1, enp0s8, ...).
[ "$root" = "/" ] && args+=(--vip-interface auto)
python3 "$here/render.py" "${args[@]}"

if [ "$root" != "/" ]; then
    exit 0
fi

# On a machine of its own: hand the rendered files to the distribution's services.
# /run is emptied at boot: have systemd recreate the lab's runtime directory
# (HAProxy's stats socket, the VRRP state log, the track file) before the services start.
echo "d /run/chaoslab 0755 root root -" > /etc/tmpfiles.d/chaoslab.conf
role="$(python3 "$here/render.py" --node "$node" --role-only)"
case "$role" in
    loadbalancer)
        sysctl -q -w net.ipv4.ip_nonlocal_bind=1
        echo "net.ipv4.ip_nonlocal_bind = 1" > /etc/sysctl.d/90-chaoslab.conf
        # A profile whose Keepalived tracks a file gets the unit of the checker that writes
        # the file; render.py removes the unit under any other profile, and a checker a
        # former profile left running is stopped and disabled here.
        checker=chaoslab-haproxy-health.service
        services=(haproxy keepalived)
        if [ -f "/etc/systemd/system/$checker" ]; then
            services=(haproxy "$checker" keepalived)
        else
            systemctl stop "$checker" 2>/dev/null || true
            rm -f "/etc/systemd/system/multi-user.target.wants/$checker"
        fi
        systemctl daemon-reload
        systemctl enable --now "${services[@]}"
        systemctl restart "${services[@]}"
        ;;
    webserver)
        if [ -d /etc/apache2/sites-available ]; then
            ln -sf /etc/chaoslab/httpd-site.conf /etc/apache2/sites-available/chaoslab.conf
            a2dissite -q 000-default || true
            a2ensite -q chaoslab
            service=apache2
        else
            ln -sf /etc/chaoslab/httpd-site.conf /etc/httpd/conf.d/chaoslab.conf
            service=httpd
        fi
        systemctl enable --now "$service"
        systemctl restart "$service"
        ;;
esac
