#!/usr/bin/env bash
# Build the disk image of chaoslab's Vagrant box for libvirt: Debian 12 (bookworm)
# made offline from the apt mirror with mmdebstrap, since no box can be
# downloaded. As root:
#
#   build.sh OUTPUT_DIR
#
# writes OUTPUT_DIR/box.img (qcow2: one ext4 partition, GRUB in the MBR) and
# OUTPUT_DIR/metadata.json. A tar file of the two is a box for
# `vagrant box add`; `chaoslab box build` does all of it and caches the result.
# What the image holds: ./packages; how it is set up: ./customize.sh.
#
# Environment:
#   CHAOSLAB_BOX_SIZE_GB     virtual disk size in GiB (default 4)
#   CHAOSLAB_BOX_SOURCES     the image's apt sources: a sources file (one-line or deb822)
#                            or a mirror URI (default: this host's
#                            /etc/apt/sources.list.d/debian.sources when it is bookworm's,
#                            else deb.debian.org with bookworm-updates and security)
#   CHAOSLAB_BOX_PUBLIC_KEY  Vagrant's insecure public key (default: the vagrant package's)
#   CHAOSLAB_BOX_COMPRESS    1: compress the qcow2 image (smaller, slower to build)
#
# The build runs in a mount namespace of its own: its mounts are never seen (nor
# kept busy) by other processes and vanish with it; the loop device is detached
# whatever happens.
set -euo pipefail

suite=bookworm
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
size_gb="${CHAOSLAB_BOX_SIZE_GB:-4}"
started=$SECONDS

usage() {
    echo "usage: $0 OUTPUT_DIR" >&2
    exit 2
}

die() {
    echo "build.sh: $*" >&2
    exit 1
}

step() {
    echo "build.sh: [$((SECONDS - started)) s] $*"
}

if [ $# -ne 1 ] || [ -z "$1" ]; then
    usage
fi
[[ "$size_gb" =~ ^[1-9][0-9]*$ ]] || die "CHAOSLAB_BOX_SIZE_GB must be a whole number of GiB, not '$size_gb'"
[ "$(id -u)" -eq 0 ] || die "must run as root: mmdebstrap, loop devices and chroot"

# command -> the Debian package that has it
declare -A tools=(
    [mmdebstrap]=mmdebstrap [sfdisk]=fdisk [partx]=util-linux [losetup]=mount
    [mkfs.ext4]=e2fsprogs [fstrim]=util-linux [unshare]=util-linux [mountpoint]=util-linux
    [qemu-img]=qemu-utils [chroot]=coreutils
)
for tool in "${!tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found: install the Debian package ${tools[$tool]}"
done

# A mount namespace of our own (exec keeps the pid: the check below passes once inside).
if [ "${CHAOSLAB_BOX_NAMESPACE:-}" != "$$" ]; then
    export CHAOSLAB_BOX_NAMESPACE=$$
    exec unshare --mount --propagation private -- bash "${BASH_SOURCE[0]}" "$@"
fi

# Vagrant's insecure public key, from wherever Vagrant is installed.
find_public_key() {
    local candidate
    local -a candidates=()
    if [ -n "${CHAOSLAB_BOX_PUBLIC_KEY:-}" ]; then
        echo "$CHAOSLAB_BOX_PUBLIC_KEY"
        return
    fi
    if command -v gem >/dev/null 2>&1; then  # the vagrant gem's file list (Debian's package, gem install)
        candidate="$(gem contents vagrant 2>/dev/null | grep '/keys/vagrant\.pub$' | sort -V | tail -n 1 || true)"
        [ -n "$candidate" ] && candidates+=("$candidate")
    fi
    shopt -s nullglob
    candidates+=(/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub  # Debian
                 /opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub          # HashiCorp's package
                 /opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant.pub)
    shopt -u nullglob
    for candidate in "${candidates[@]}"; do
        if [ -f "$candidate" ]; then
            echo "$candidate"
            return
        fi
    done
    return 1
}
public_key="$(find_public_key)" \
    || die "Vagrant's insecure public key (keys/vagrant.pub of the vagrant gem) not found: install the Debian package vagrant or set CHAOSLAB_BOX_PUBLIC_KEY"
grep -Eq '^(ssh-(rsa|ed25519)|ecdsa-sha2-nistp[0-9]+) ' "$public_key" || die "$public_key is not an SSH public key"

# The image's apt sources: the host's mirror when it serves the same suite.
sources=()
aptopts=()
host_sources=/etc/apt/sources.list.d/debian.sources
if [ -n "${CHAOSLAB_BOX_SOURCES:-}" ]; then
    sources=("$CHAOSLAB_BOX_SOURCES")
elif [ -f "$host_sources" ] && grep -Eq "^Suites:.*[[:space:]]$suite([[:space:]]|$)" "$host_sources"; then
    sources=("$host_sources")
    # a snapshot mirror's Release files are past their Valid-Until: do as the host does
    eval "$(apt-config shell check_valid_until Acquire::Check-Valid-Until)"
    if [ "${check_valid_until:-}" = false ]; then
        aptopts+=(--aptopt='Acquire::Check-Valid-Until "false"')
    fi
fi

out="$1"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
raw="$out/disk.raw"
image="$out/box.img"
metadata="$out/metadata.json"
mnt="$out/rootfs"
loop=""

cleanup() {
    local status=$?
    set +e
    if mountpoint -q "$mnt"; then
        umount --recursive "$mnt" 2>/dev/null || umount --recursive --lazy "$mnt"
    fi
    if [ -n "$loop" ]; then
        partx -d "$loop" 2>/dev/null
        losetup -d "$loop"
    fi
    rmdir "$mnt" 2>/dev/null
    rm -f "$raw"
    if [ "$status" -ne 0 ]; then
        rm -f "$image" "$metadata"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loop device a killed earlier build left on this image file.
while read -r stale; do
    [ -n "$stale" ] || continue
    partx -d "$stale" 2>/dev/null || true
    losetup -d "$stale" || true
done < <(if [ -e "$raw" ]; then losetup --noheadings --output NAME --associated "$raw"; fi)
rm -f "$raw" "$image" "$metadata"
if [ -e "$mnt" ]; then
    rmdir "$mnt" || die "$mnt is in the way (left by an earlier build?)"
fi

step "disk: ${size_gb} GiB, one ext4 partition"
truncate -s "${size_gb}G" "$raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk --quiet "$raw"
loop="$(losetup --find --show "$raw")"
partx -a "$loop"  # losetup -P makes no partition devices here
part="${loop}p1"
for _ in $(seq 50); do
    [ -b "$part" ] && break
    sleep 0.1
done
[ -b "$part" ] || die "no partition device $part after partx -a $loop"
uuid="$(cat /proc/sys/kernel/random/uuid)"
mkfs.ext4 -q -L root -U "$uuid" "$part"
mkdir "$mnt"
mount "$part" "$mnt"

if [ ${#sources[@]} -gt 0 ]; then
    step "mmdebstrap $suite, apt sources: ${sources[0]}"
else
    step "mmdebstrap $suite, apt sources: the default of mmdebstrap (deb.debian.org)"
fi
packages="$(sed -e 's/#.*//' "$here/packages" | tr -s '[:space:]' ' ')"
# The hooks' $1 is the tree, for mmdebstrap's sh: single quotes on purpose. The
# essential hook runs before the kernel's initramfs is made: no resume device (it
# would name the build host's swap).
# shellcheck disable=SC2016
CHAOSLAB_BOX_ROOT_UUID="$uuid" CHAOSLAB_BOX_PUBLIC_KEY="$public_key" \
    mmdebstrap --mode=root --variant=required --format=directory \
    --include="$packages" \
    "${aptopts[@]}" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --essential-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo RESUME=none > "$1/etc/initramfs-tools/conf.d/resume"' \
    --customize-hook="$(printf '%q' "$here/customize.sh") \"\$1\"" \
    "$suite" "$mnt" "${sources[@]}"

step "GRUB to the disk's MBR"
# A /dev of the image's own, with the loop devices and the by-uuid link that
# update-grub needs to write root=UUID=... (this host has no udev to make it).
mount -t tmpfs -o mode=0755,size=1m chaoslab-dev "$mnt/dev"
cp -a /dev/null /dev/zero /dev/full /dev/random /dev/urandom "$loop" "$part" "$mnt/dev/"
mkdir -p "$mnt/dev/disk/by-uuid"
ln -s "../../${part##*/}" "$mnt/dev/disk/by-uuid/$uuid"
mount -t proc proc "$mnt/proc"
mount -t sysfs sysfs "$mnt/sys"
LC_ALL=C chroot "$mnt" grub-install --target=i386-pc "$loop"
LC_ALL=C chroot "$mnt" update-grub
umount "$mnt/sys" "$mnt/proc" "$mnt/dev"
grep -q "root=UUID=$uuid .*net.ifnames=0" "$mnt/boot/grub/grub.cfg" \
    || die "/boot/grub/grub.cfg does not boot root=UUID=$uuid with net.ifnames=0"

step "freeing the blocks of deleted files (apt's downloads)"
fstrim "$mnt"
umount "$mnt"
rmdir "$mnt"
partx -d "$loop"
losetup -d "$loop"
loop=""

step "qcow2 image"
convert=(qemu-img convert -f raw -O qcow2)
[ "${CHAOSLAB_BOX_COMPRESS:-0}" = 1 ] && convert+=(-c)
"${convert[@]}" "$raw" "$image"
rm -f "$raw"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' "$size_gb" > "$metadata"
step "done: $image ($(du -h "$image" | cut -f1)), $metadata"
