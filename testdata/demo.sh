#!/usr/bin/env bash
# demo.sh: husk end to end on a real image. Builds husk and a Debian bookworm
# SIF, makes an overlay image, and runs the container twice as an ordinary
# user (no root, no setuid, no FUSE helpers) to show that changes persist and
# that the overlay stays clean for e2fsck.
set -euo pipefail
cd "$(dirname "$0")/.."
. testdata/deps.sh
husk_need_tools
husk_need_fuse
husk_need_cache

husk=$HUSK_CACHE/husk
go build -o "$husk" ./cmd/husk
chmod 0755 "$husk"
sif=$(testdata/mkimage.sh "$husk")

# Run as the test user when we are root, so the demo is really rootless.
as_user=()
work=$HUSK_CACHE/demo
if [ "$(id -u)" = 0 ]; then
	husk_need_user
	as_user=(runuser -u "$HUSK_TEST_USER" --)
	work=$(getent passwd "$HUSK_TEST_USER" | cut -d: -f6)/husk-demo
fi
"${as_user[@]}" mkdir -p "$work"
overlay=$work/overlay.img
"${as_user[@]}" rm -f "$overlay"

step() { printf '\n== %s\n' "$*"; }
step "husk overlay create --size 64 $overlay"
"${as_user[@]}" "$husk" overlay create --size 64 "$overlay"

step "run 1: write a file, delete a package file"
"${as_user[@]}" "$husk" exec --overlay "$overlay" "$sif" sh -c '
	id
	echo "hello from run 1" > /opt/note.txt
	rm /usr/share/doc/python3/copyright
	python3 -c "import sys; print(\"python\", sys.version.split()[0])"'

step "run 2: the file is there, the package file stays deleted"
"${as_user[@]}" "$husk" exec --overlay "$overlay" "$sif" sh -c '
	cat /opt/note.txt
	if [ -e /usr/share/doc/python3/copyright ]; then echo "copyright is back"; exit 1; fi
	echo "copyright stays deleted"'

step "e2fsck -fn $overlay"
e2fsck -fn "$overlay"
echo
echo "demo: OK"
