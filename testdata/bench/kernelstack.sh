#!/bin/sh
# kernelstack.sh SIF OFFSET OVERLAY DIR TMPDIR WORKLOAD
#
# Stack (c) of bench.sh, run as root inside `unshare -m` (a private mount
# namespace, so nothing shows on the host even if this is killed): the
# kernel mounts Apptainer makes in setuid mode (COMPAT §3.4, §4.3):
#   squashfs on a loop device at OFFSET (ro,nosuid,nodev),
#   the ext3 overlay image on a loop device (nosuid,nodev),
#   overlayfs lowerdir=sq,upperdir=ext/upper,workdir=ext/work,
# then binds /proc /dev /sys (recursively) and TMPDIR on /tmp (not
# recursively: the host's /tmp may hold other FUSE mounts), chroots into DIR/m, runs WORKLOAD with
# sh -c, and unmounts everything (ext3's unmount writes back what is dirty;
# the loop devices are autoclear and go with their mounts). With OVERLAY "-"
# the squashfs alone is the root.
set -u
PATH=$PATH:/usr/sbin:/sbin
sif=$1 off=$2 ov=$3 dir=$4 tmpdir=$5 workload=$6

cleanup() {
	umount -R -l "$dir/m" 2>/dev/null
	umount -l "$dir/ext" 2>/dev/null
	umount -l "$dir/sq" 2>/dev/null
}
trap 'cleanup; exit 125' INT TERM HUP
fail() { echo "kernelstack: $*" >&2; cleanup; exit 125; }

# run_in ROOT: rbind /proc /dev /sys and bind TMPDIR on /tmp in ROOT, chroot
# there and run WORKLOAD; its exit status goes to rc.
run_in() {
	for d in proc dev sys; do
		mount --rbind "/$d" "$1/$d" || fail "bind /$d failed"
	done
	mount --bind "$tmpdir" "$1/tmp" || fail "bind $tmpdir failed"
	chroot "$1" /bin/sh -c "$workload"
	rc=$?
}

mkdir -p "$dir/sq" "$dir/ext" "$dir/m" || exit 125
mount -t squashfs -o loop,ro,nosuid,nodev,offset="$off" "$sif" "$dir/sq" ||
	fail "squashfs mount of $sif failed"
cd "$dir" || fail "cd $dir"
if [ "$ov" = - ]; then
	run_in sq
	umount -R sq || fail "unmount failed"
	exit $rc
fi
mount -t ext3 -o loop,nosuid,nodev "$ov" "$dir/ext" || fail "ext3 mount of $ov failed"
mount -t overlay -o lowerdir=sq,upperdir=ext/upper,workdir=ext/work overlay m ||
	fail "overlay mount failed"
run_in m

umount -R m && umount ext && umount sq || fail "unmount failed"
exit $rc
