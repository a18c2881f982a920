#!/bin/sh
# helperstack.sh SIF OFFSET OVERLAY DIR TMPDIR PIDFILE WORKLOAD
#
# Stack (b) of bench.sh, run by the unprivileged user inside
# `unshare -Ur --mount` (a root-mapped user namespace with a private mount
# namespace): the FUSE helpers Apptainer uses rootless mount from inside the
# namespace themselves (as Apptainer's user-namespace mode does, no
# fusermount), with the options of COMPAT §3.5:
#   squashfuse_ll -f -o allow_other,ro,offset=OFFSET SIF DIR/sq
#   fuse2fs -f -o allow_other,fakeroot OVERLAY DIR/ext
#   fuse-overlayfs -f -o allow_other,lowerdir=sq,upperdir=ext/upper,
#                        workdir=ext/work,noacl DIR/m
# then binds /proc /dev /sys (recursively) and TMPDIR on /tmp (not
# recursively: the host's /tmp may hold other FUSE mounts), chroots into DIR/m, runs WORKLOAD with
# sh -c, and unmounts everything, waiting for each daemon to exit (fuse2fs
# writes its metadata back on exit, so that is part of the time).
# With OVERLAY "-" only squashfuse_ll runs and DIR/sq is the root, as
# Apptainer runs a SIF without an overlay.
# Daemon PIDs go to PIDFILE so bench.sh can kill them if this is killed.
# The mounts live only in this mount namespace: they vanish with it.
set -u
PATH=$PATH:/usr/sbin:/sbin
sif=$1 off=$2 ov=$3 dir=$4 tmpdir=$5 pidfile=$6 workload=$7
p1= p2= p3=

cleanup() {
	[ -n "$p3" ] && { umount -l "$dir/m" 2>/dev/null; kill "$p3" 2>/dev/null; }
	umount -l "$dir/ext" 2>/dev/null
	umount -l "$dir/sq" 2>/dev/null
	for p in $p3 $p2 $p1; do kill "$p" 2>/dev/null; done
	wait
}
trap 'cleanup; exit 125' INT TERM HUP

# mounted DIR: is DIR a mount point in this namespace?
mounted() { grep -q " $1 " /proc/self/mountinfo; }

# await PID DIR: poll every 5 ms (Apptainer polls every 25 ms) for the
# daemon's mount, for at most 10 s; fail if the daemon dies first.
await() {
	i=0
	until mounted "$2"; do
		if ! kill -0 "$1" 2>/dev/null || [ $i -ge 2000 ]; then
			echo "helperstack: mount of $2 failed" >&2
			cleanup
			exit 125
		fi
		i=$((i + 1))
		sleep 0.005
	done
}

# run_in ROOT: rbind /proc /dev /sys and bind TMPDIR on /tmp in ROOT, chroot
# there and run WORKLOAD; its exit status goes to rc.
run_in() {
	for d in proc dev sys; do
		mount --rbind "/$d" "$1/$d" || { cleanup; exit 125; }
	done
	mount --bind "$tmpdir" "$1/tmp" || { cleanup; exit 125; }
	chroot "$1" /bin/sh -c "$workload"
	rc=$?
}

mkdir -p "$dir/sq" "$dir/ext" "$dir/m" || exit 125
squashfuse_ll -f -o allow_other,ro,offset="$off" "$sif" "$dir/sq" &
p1=$!
echo "$p1" >"$pidfile"
await "$p1" "$dir/sq"
cd "$dir" || exit 125
if [ "$ov" = - ]; then
	run_in sq
	umount -l sq && wait "$p1"
	exit $rc
fi
fuse2fs -f -o allow_other,fakeroot "$ov" "$dir/ext" &
p2=$!
echo "$p1 $p2" >"$pidfile"
await "$p2" "$dir/ext"
fuse-overlayfs -f -o allow_other,lowerdir=sq,upperdir=ext/upper,workdir=ext/work,noacl m &
p3=$!
echo "$p1 $p2 $p3" >"$pidfile"
await "$p3" "$dir/m"
run_in m

# Submounts of the rbinds are locked to them in a user namespace, so
# detach the whole tree at once; the overlay daemon exits when it goes.
umount -l m && wait "$p3"
p3=
umount ext && umount sq || { cleanup; exit 125; }
wait
exit $rc
