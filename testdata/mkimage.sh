#!/usr/bin/env bash
# mkimage.sh HUSK_BINARY: prints the path of the cached Debian bookworm test
# image (minbase + python3) as a SIF built by `husk build`, building it first
# if it is not there. Building needs root (debootstrap) and the network to
# the Debian archive; it takes about a minute and is done once per machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/deps.sh"
husk=${1:?usage: mkimage.sh HUSK_BINARY}
husk_need_cache
rootfs=$HUSK_CACHE/rootfs
sif=$HUSK_CACHE/debian.sif
mirror=${HUSK_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ ! -d "$rootfs" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "mkimage: $rootfs is missing and debootstrap needs root" >&2
		exit 1
	fi
	husk_need_tools
	tmp=$rootfs.tmp.$$
	rm -rf "$tmp"
	echo "mkimage: debootstrap bookworm into $rootfs (once, about a minute)" >&2
	debootstrap --variant=minbase --include=python3 bookworm "$tmp" "$mirror" \
		>"$HUSK_CACHE/debootstrap.log" 2>&1 ||
		{ echo "mkimage: debootstrap failed, see $HUSK_CACHE/debootstrap.log" >&2; exit 1; }
	mv "$tmp" "$rootfs"
fi
if [ ! -f "$sif" ] || [ "$rootfs" -nt "$sif" ]; then
	"$husk" build "$sif.tmp.$$" "$rootfs" >&2
	chmod 0644 "$sif.tmp.$$"
	mv "$sif.tmp.$$" "$sif"
fi
echo "$sif"
