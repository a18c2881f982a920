#!/usr/bin/env bash
# posix.sh: measures husk's union against POSIX with pjdfstest and fsx, and
# compares it with the kernel's overlayfs on the same kind of layers. It
# fetches nothing: build the tools first, outside the repository, and give
# their paths (testdata/posix/README.md says how):
#
#   PJDFSTEST_DIR  a built pjdfstest tree (the pjdfstest binary, tests/)
#   FSX            the fsx binary of xfstests (ltp/fsx.c)
#
# Usage: testdata/posix.sh [RUN...]   (default: every run this user can do)
#
# Runs, each on the SIF's squashfs under an upper, in /pjd of the union:
#   husk-ext3    husk exec --fakeroot --overlay o.img (ext3 image upper)
#   husk-dir     husk exec --fakeroot --overlay DIR (DIR/upper, DIR/work)
#   union-ext3   the same union (fusefs) served on the host by
#   union-dir    testdata/posix/unionmount, no user namespace, tests as root:
#                the union's semantics without a user namespace
#   kernel-ext3  mount -t overlay over a loop squashfs and a loop ext3 image
# husk-* run as $HUSK_TEST_USER when started as root, as demo.sh does;
# union-* and kernel-* need root.
#
# Other settings: POSIX_OUT (results, default $HUSK_CACHE/posix/<time>),
# HUSK (husk binary; default: built from this tree into POSIX_OUT),
# FSX_OPS (default 100000), PJDFSTEST_TIMEOUT (seconds per .t, default 1800: with
# --fakeroot's full id range, rename/09 and 10 run over 2,000 assertions each,
# 215 s and more on two busy cores).
#
# Output: POSIX_OUT/<run>/ has each .t file's TAP output; POSIX_OUT/summary.txt
# has the table printed at the end, POSIX_OUT/failures.txt every failing
# assertion with its .t line.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
. testdata/deps.sh
husk_need_tools
husk_need_fuse
husk_need_cache

fail() { echo "posix: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*" >&2; }

[ -n "${PJDFSTEST_DIR:-}" ] || [ -n "${FSX:-}" ] ||
	fail "set PJDFSTEST_DIR (built pjdfstest tree) and/or FSX (fsx binary); see testdata/posix/README.md"
if [ -n "${PJDFSTEST_DIR:-}" ]; then
	PJDFSTEST_DIR=$(cd "$PJDFSTEST_DIR" && pwd) || fail "PJDFSTEST_DIR: no such directory"
	[ -x "$PJDFSTEST_DIR/pjdfstest" ] && [ -f "$PJDFSTEST_DIR/tests/misc.sh" ] ||
		fail "$PJDFSTEST_DIR is not a built pjdfstest tree (pjdfstest, tests/misc.sh)"
fi
if [ -n "${FSX:-}" ]; then
	[ -x "$FSX" ] || fail "FSX=$FSX is not an executable"
	FSX=$(cd "$(dirname "$FSX")" && pwd)/$(basename "$FSX")
fi
fsx_ops=${FSX_OPS:-100000}

root=false
[ "$(id -u)" = 0 ] && root=true
runs=("$@")
if [ ${#runs[@]} = 0 ]; then
	runs=(husk-ext3 husk-dir)
	$root && runs+=(union-ext3 union-dir kernel-ext3)
fi

out=${POSIX_OUT:-$HUSK_CACHE/posix/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
chmod 0755 "$out"

as_user=()
if $root; then
	husk_need_user
	as_user=(runuser -u "$HUSK_TEST_USER" --)
fi
husk=${HUSK:-}
if [ -z "$husk" ]; then
	husk=$out/husk
	go build -o "$husk" ./cmd/husk || fail "go build ./cmd/husk failed"
	chmod 0755 "$husk"
fi
sif=$(testdata/mkimage.sh "$husk") || fail "no test image"
posix=$repo/testdata/posix

# The husk runs bind their tools at new top-level directories: a bind
# target under an existing image directory (/opt/x) makes husk add that
# directory to the skeleton layer, which changes its inode number, and the
# kernel then drops every mount under it at the next revalidation.
husk_exec() { # RUNDIR OVERLAY CMD...: one husk container for a run
	local dir=$1 ovl=$2
	shift 2
	local binds=(-B "$posix:/posix:ro" -B "$dir/res:/res")
	[ -n "${PJDFSTEST_DIR:-}" ] && binds+=(-B "$PJDFSTEST_DIR:/pjdfstest:ro")
	[ -n "${FSX:-}" ] && binds+=(-B "$(dirname "$FSX"):/fsxbin:ro")
	"${as_user[@]}" "$husk" exec --fakeroot --overlay "$ovl" "${binds[@]}" "$sif" "$@"
}

# new_run RUN: a fresh directory for RUN, writable by the husk user.
new_run() {
	local dir=$out/$1
	rm -rf "$dir"
	mkdir -p "$dir/res"
	# The husk user makes the layers of every run, and writes results.
	$root && chown -R "$HUSK_TEST_USER:" "$dir"
	echo "$dir"
}

# The layers of one run: an ext3 image made by husk, or an overlay directory.
make_upper() { # KIND DIR: prints the --overlay argument
	case $1 in
	ext3)
		"${as_user[@]}" "$husk" overlay create --fakeroot --size 256 "$2/o.img" >&2 ||
			fail "overlay create"
		echo "$2/o.img" ;;
	dir)
		"${as_user[@]}" mkdir -p "$2/ovl/upper" "$2/ovl/work"
		echo "$2/ovl" ;;
	esac
}

# fsx_script FSXBIN: the fsx runs, as one sh -c script: a new file in
# the upper, then a lower file copied up on open (-k keeps its contents,
# which fsx reads as its reference, so the copy-up itself is checked
# first: an empty append copies it up, and its md5 must not change; not
# with ":", a special builtin, whose failed redirection would end sh); the
# md5sums at the end let a second container check that the data persisted.
fsx_script() { # FSXBIN
	local f=$1
	cat <<EOF
mkdir -p /fsx
$f -N $fsx_ops -C -I -S 1 -p 20000 -P /res /fsx/new.dat >/res/fsx-new.log 2>&1
echo "fsx-new rc=\$?" >>/res/fsx.rc
md5sum </usr/bin/python3.11 >/res/md5.lower
cat /dev/null >>/usr/bin/python3.11
md5sum </usr/bin/python3.11 >/res/md5.copied
$f -k -N $fsx_ops -C -I -S 2 -p 20000 -P /res /usr/bin/python3.11 >/res/fsx-copyup.log 2>&1
echo "fsx-copyup rc=\$?" >>/res/fsx.rc
md5sum /fsx/new.dat /usr/bin/python3.11 >/res/md5.1
EOF
}

run_husk() { # KIND (ext3|dir)
	local name=husk-$1 dir ovl
	dir=$(new_run "$name")
	ovl=$(make_upper "$1" "$dir")
	if [ -n "${PJDFSTEST_DIR:-}" ]; then
		step "$name: pjdfstest in /pjd"
		husk_exec "$dir" "$ovl" env PJDFSTEST_TIMEOUT="${PJDFSTEST_TIMEOUT:-1800}" \
			bash /posix/pjdfstest-run.sh /pjdfstest /res /pjd ||
			echo "posix: $name: pjdfstest runner exited $?" >&2
	fi
	if [ -n "${FSX:-}" ]; then
		step "$name: fsx -N $fsx_ops (new file, copied-up /usr/bin/python3.11)"
		husk_exec "$dir" "$ovl" sh -c "$(fsx_script /fsxbin/$(basename "$FSX"))"
		husk_exec "$dir" "$ovl" sh -c 'md5sum /fsx/new.dat /usr/bin/python3.11 >/res/md5.2'
	fi
	if [ "$1" = ext3 ]; then
		e2fsck -fn "$ovl" >"$dir/e2fsck.log" 2>&1
		echo "e2fsck rc=$?" >>"$dir/e2fsck.log"
	fi
}

# host_run NAME MERGED: pjdfstest and fsx as root in an already mounted
# union, from the host.
host_run() {
	local name=$1 m=$2 dir=$out/$1
	if [ -n "${PJDFSTEST_DIR:-}" ]; then
		step "$name: pjdfstest in /pjd"
		PJDFSTEST_TIMEOUT=${PJDFSTEST_TIMEOUT:-1800} \
			bash "$posix/pjdfstest-run.sh" "$PJDFSTEST_DIR" "$dir/res" "$m/pjd"
	fi
	if [ -n "${FSX:-}" ]; then
		step "$name: fsx -N $fsx_ops"
		# The script's paths are the container's: run it chrooted, with
		# the tools bound in as husk binds them.
		mkdir -p "$m/res" "$m/fsxbin"
		mount --bind "$dir/res" "$m/res" && mount --bind "$(dirname "$FSX")" "$m/fsxbin" &&
			chroot "$m" sh -c "$(fsx_script /fsxbin/$(basename "$FSX"))"
		umount "$m/fsxbin" "$m/res" 2>/dev/null
		cp "$dir/res/md5.1" "$dir/res/md5.2"
		rmdir "$m/res" "$m/fsxbin"
	fi
}

run_union() { # KIND (ext3|dir)
	local name=union-$1 dir helper pid
	$root || fail "$name needs root"
	dir=$(new_run "$name")
	helper=$out/unionmount
	[ -x "$helper" ] || go build -o "$helper" ./testdata/posix/unionmount ||
		fail "go build ./testdata/posix/unionmount failed"
	mkdir -p "$dir/mnt"
	local args=(-sif "$sif" -ready "$dir/ready")
	if [ "$1" = ext3 ]; then
		args+=(-ext3 "$(make_upper ext3 "$dir")")
	else
		args+=(-dir "$(make_upper dir "$dir")")
	fi
	"$helper" "${args[@]}" "$dir/mnt" >"$dir/unionmount.log" 2>&1 &
	pid=$!
	for _ in $(seq 100); do [ -e "$dir/ready" ] && break; sleep 0.1; done
	[ -e "$dir/ready" ] || fail "$name: unionmount did not mount: $(cat "$dir/unionmount.log")"
	host_run "$name" "$dir/mnt"
	kill -TERM "$pid"
	wait "$pid" || echo "posix: $name: unionmount exited $?" >&2
	if [ "$1" = ext3 ]; then
		e2fsck -fn "$dir/o.img" >"$dir/e2fsck.log" 2>&1
		echo "e2fsck rc=$?" >>"$dir/e2fsck.log"
	fi
}

# sif_offset prints the byte offset of the SIF's squashfs partition.
sif_offset() {
	local o
	for o in $(grep -obUa hsqs "$sif" | head -20 | cut -d: -f1); do
		if unsquashfs -s -o "$o" "$sif" >/dev/null 2>&1; then
			echo "$o"
			return
		fi
	done
	fail "no squashfs partition found in $sif"
}

run_kernel() {
	local name=kernel-ext3 dir l
	$root || fail "$name needs root"
	dir=$(new_run "$name")
	l=$dir/layers
	mkdir -p "$l/lower" "$l/ext3" "$dir/mnt"
	make_upper ext3 "$dir" >/dev/null
	mount -t squashfs -o loop,ro,offset="$(sif_offset)" "$sif" "$l/lower" || fail "mount squashfs"
	mount -o loop "$dir/o.img" "$l/ext3" || fail "mount ext3"
	mount -t overlay overlay -o "lowerdir=$l/lower,upperdir=$l/ext3/upper,workdir=$l/ext3/work" \
		"$dir/mnt" || fail "mount overlay"
	host_run "$name" "$dir/mnt"
	umount "$dir/mnt" "$l/ext3" "$l/lower"
	# The loop device lets go of the image after umount returns; checked
	# before that, e2fsck sees a journal still to recover and stale blocks.
	for _ in $(seq 100); do
		[ -z "$(losetup -j "$dir/o.img")" ] && break
		sleep 0.1
	done
	e2fsck -fn "$dir/o.img" >"$dir/e2fsck.log" 2>&1
	echo "e2fsck rc=$?" >>"$dir/e2fsck.log"
}

for r in "${runs[@]}"; do
	case $r in
	husk-ext3) run_husk ext3 ;;
	husk-dir) run_husk dir ;;
	union-ext3) run_union ext3 ;;
	union-dir) run_union dir ;;
	kernel-ext3) run_kernel ;;
	*) fail "unknown run $r (husk-ext3 husk-dir union-ext3 union-dir kernel-ext3)" ;;
	esac
done

step "summary"
bash "$posix/summary.sh" "$out" "${runs[@]}" | tee "$out/summary.txt"
echo "posix: results in $out" >&2
