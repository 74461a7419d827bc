#!/usr/bin/env bash
# bootstrap-base.sh - make a Debian 12 (bookworm) base image without any registry: debootstrap a
# minimal root file system from the Debian mirror this machine's apt uses, and import it.
#
#   bash docker/bootstrap-base.sh [IMAGE]        default IMAGE: localhost/debian:bookworm
#   podman build -f docker/Dockerfile --build-arg BASE=localhost/debian:bookworm -t localhost/ddtrain .
#
# Needs root, debootstrap and podman (ENGINE=docker for Docker). MIRROR overrides the mirror.
set -euo pipefail
img=${1:-localhost/debian:bookworm}
engine=${ENGINE:-podman}
die() { echo "bootstrap-base.sh: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "debootstrap needs root"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
command -v "$engine" >/dev/null || die "$engine not found (ENGINE=podman or docker)"

# the mirror(s) apt already uses here (reachable even where registries are not)
mirror=${MIRROR:-$(apt-get indextargets --format '$(REPO_URI)' 'Release: bookworm' 'Identifier: Packages' 2>/dev/null | head -n 1)}
mirror=${mirror:-http://deb.debian.org/debian/}

work=$(mktemp -d /tmp/ddtrain-rootfs.XXXXXX)
cleanup() {
    local m
    for m in dev/pts dev sys proc; do umount "$work/rootfs/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "bootstrap-base.sh: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
# the image's apt uses the same suites as this machine (bookworm, -updates, -security), main only
sources=$(apt-get indextargets --format 'deb $(REPO_URI) $(RELEASE) main' 'Identifier: Packages' 2>/dev/null |
          grep -E ' bookworm(-updates|-security)? main$' | sort -u || true)
[ -n "$sources" ] && printf '%s\n' "$sources" >"$work/rootfs/etc/apt/sources.list"
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
echo "bootstrap-base.sh: importing as $img"
tar -C "$work/rootfs" --numeric-owner -c . | "$engine" import -q - "$img" >/dev/null
echo "bootstrap-base.sh: $img ready"
