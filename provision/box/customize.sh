#!/usr/bin/env bash
# mmdebstrap's customize hook for chaoslab's Vagrant box (build.sh passes it):
# turn the installed tree at $1 into a Vagrant base box for libvirt. Runs on the
# build host, after every package is installed and while mmdebstrap's own guards
# (its policy-rc.d and start-stop-daemon) keep the daemons from starting.
#
#   customize.sh ROOT     (environment: CHAOSLAB_BOX_ROOT_UUID, CHAOSLAB_BOX_PUBLIC_KEY)
#
# Nothing here needs the network.
set -euo pipefail

root="${1:?usage: customize.sh ROOT}"
uuid="${CHAOSLAB_BOX_ROOT_UUID:?the UUID of the root file system}"
public_key="${CHAOSLAB_BOX_PUBLIC_KEY:?the path of the insecure public key of Vagrant}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
install_sh="$here/../install.sh"
if [ ! -d "$root" ] || [ "$(cd "$root" && pwd -P)" = / ]; then
    echo "customize.sh: $root is not the tree of an image" >&2
    exit 2
fi

in_root() {
    chroot "$root" "$@"
}

# -- the lab's packages: provision/install.sh must find all of them present. It
# runs as nobody, so that a missing package ends in "must run as root to install"
# instead of a download.
cp "$install_sh" "$root/tmp/chaoslab-install.sh"
chmod 0755 "$root/tmp/chaoslab-install.sh"
for role in loadbalancer webserver; do
    if ! output="$(chroot --userspec=65534:65534 "$root" /bin/bash /tmp/chaoslab-install.sh --role "$role" 2>&1)" \
            || [[ "$output" != *"already installed"* ]]; then
        echo "customize.sh: install.sh --role $role would not find all its packages in the image:" >&2
        echo "$output" >&2
        exit 1
    fi
    echo "customize.sh: install.sh --role $role: $output"
done
rm -f "$root/tmp/chaoslab-install.sh"

# -- the lab's daemons are installed, not started: configure.sh enables the ones
# of the node's role (apache2 on a load balancer would hold port 80 the VIP needs).
in_root systemctl disable --quiet haproxy.service keepalived.service apache2.service
# Nor what costs a first boot under plain emulation and buys a VM nothing: apt
# runs (a VM reaches no mirror), e2scrub (LVM snapshots; there are none).
in_root systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service

# -- identity: every VM gets its own machine-id (mmdebstrap leaves it empty) and
# hostname (Vagrant sets it); mmdebstrap copied the build host's in.
echo debian > "$root/etc/hostname"
cat > "$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	debian
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
EOF
: > "$root/etc/resolv.conf"  # dhclient writes it at boot

# -- disk and boot: root by UUID; GRUB without a menu, the kernel on the serial
# console too, and classic NIC names (eth0, eth1, ...) that the topology uses.
cat > "$root/etc/fstab" <<EOF
UUID=$uuid	/	ext4	errors=remount-ro	0	1
EOF
mkdir -p "$root/etc/default/grub.d"
cat > "$root/etc/default/grub.d/chaoslab.cfg" <<'EOF'
GRUB_TIMEOUT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF

# -- network: DHCP on the first NIC; Vagrant appends the private networks.
cat > "$root/etc/network/interfaces" <<'EOF'
# The first NIC (Vagrant's management network) gets its address by DHCP;
# Vagrant adds the private networks below, between #VAGRANT-BEGIN and #VAGRANT-END.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
EOF

# -- ssh: each VM makes its own host keys on its first boot, so that no two VMs
# share them. Ed25519 and ECDSA only: an RSA key takes some 16 s to make under
# plain QEMU emulation, before sshd may start.
cat > "$root/etc/ssh/sshd_config.d/vagrant.conf" <<'EOF'
# Vagrant base box: no reverse DNS lookup of the client (slow logins without DNS).
UseDNS no
# The keys ssh-host-keys.service makes on the first boot.
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
EOF
mkdir -p "$root/run/sshd"  # mmdebstrap empties /run afterwards
in_root /usr/sbin/sshd -t  # the configuration is valid (checked with the keys the package made)
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/ssh-host-keys.service" <<'EOF'
[Unit]
Description=Make the SSH host keys of this machine
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
ExecStart=/usr/bin/ssh-keygen -q -t ecdsa -N "" -f /etc/ssh/ssh_host_ecdsa_key

[Install]
WantedBy=ssh.service
EOF
in_root systemctl enable --quiet ssh-host-keys.service

# -- the vagrant user: Vagrant's insecure key (which Vagrant replaces on first
# boot), passwordless sudo, no password login ("*" is no password, not a lock:
# sshd accepts the key).
in_root useradd --create-home --shell /bin/bash --user-group vagrant
in_root usermod --password '*' vagrant
install -d -m 0700 "$root/home/vagrant/.ssh"
install -m 0600 "$public_key" "$root/home/vagrant/.ssh/authorized_keys"
in_root chown -R vagrant:vagrant /home/vagrant/.ssh
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > "$root/etc/sudoers.d/vagrant"
chmod 0440 "$root/etc/sudoers.d/vagrant"
in_root visudo --check --quiet --file=/etc/sudoers.d/vagrant
