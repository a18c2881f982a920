#!/usr/bin/env bash
# bench.sh: husk side by side with the stacks it replaces, on the same Debian
# image and the same 2 GiB overlay image size. Run as root (it needs root for
# the kernel stack, for dropping caches and to switch to the test user):
#
#   bash testdata/bench.sh
#
# Stacks:
#   (a) husk, as the unprivileged user husktest (uid 1500):
#       husk exec --overlay OVERLAY.img IMAGE.sif sh -c WORKLOAD
#   (b) Apptainer's rootless helper stack, mounted by hand as husktest inside
#       `unshare -Ur --mount`: squashfuse_ll, fuse2fs and fuse-overlayfs with
#       Apptainer's options, then chroot (bench/helperstack.sh)
#   (c) the kernel stack as root: loop squashfs + loop ext3 + overlayfs,
#       then chroot (bench/kernelstack.sh)
# Every measured run includes mounting and unmounting (every husk exec starts
# cold) and gets a fresh copy of the overlay image.
#
# Environment:
#   BENCH_RUNS=N         timed runs per workload and stack (default 5); the
#                        table shows the median
#   BENCH_ONLY=LIST      workloads to run, by number or name, comma or space
#                        separated (e.g. "1,3" or "true python write256")
#   BENCH_SKIP_BIG=1     skip the 1 GiB file and the 10x image (workloads 5, 8)
#   BENCH_STACKS=LIST    stacks to run (default "a b c")
#   HUSK_BIN=PATH        measure this husk binary instead of building one
# The result goes to stdout and to $HUSK_CACHE/bench-<date>.md; the images it
# builds are cached in $HUSK_CACHE (bench-*.sif, bench-tree.tar).
set -Eeuo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/deps.sh"

runs=${BENCH_RUNS:-5}
only=${BENCH_ONLY:-}
skip_big=${BENCH_SKIP_BIG:-0}
stacks=${BENCH_STACKS:-a b c}
user=$HUSK_TEST_USER

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }
[ "$(id -u)" = 0 ] || die "run as root (kernel stack, drop_caches, switching to $user)"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive number"
husk_need_tools
husk_need_fuse
husk_need_user
husk_need_cache
export PATH=$PATH:/usr/sbin:/sbin
uid=$(id -u "$user")

# --- cleanup: everything this script starts or mounts is undone here ------
tmp=$(mktemp -d /tmp/husk-bench.XXXXXX)
chmod 0755 "$tmp"
cur_pid=      # the benchtool process of the run in progress
cache_tmp=()  # half-built cache files
completed=() # workloads measured so far, for the report
reported=
cleanup() {
	local rc=$? p m
	trap - EXIT INT TERM HUP ERR
	# Interrupted: still report what was measured.
	if [ -z "$reported" ] && [ ${#completed[@]} -gt 0 ]; then
		report "interrupted: only the workloads that finished" || true
	fi
	if [ -n "$cur_pid" ] && kill -0 "$cur_pid" 2>/dev/null; then
		kill -TERM "$cur_pid" 2>/dev/null || true # benchtool kills its group
		wait "$cur_pid" 2>/dev/null || true
	fi
	# FUSE daemons of the helper stack, by the PIDs it recorded.
	for p in $(cat "$tmp"/run/pids 2>/dev/null); do
		kill -TERM "$p" 2>/dev/null || true
	done
	# Nothing should be mounted here (every stack mounts in its own mount
	# namespace), but never leave a mount behind if something was.
	for m in $(awk -v t="$tmp" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo |
		sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	for p in "${cache_tmp[@]}"; do rm -rf "$p"; done
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
trap 'echo "bench: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# --- tools ------------------------------------------------------------------
cd "$repo"
go build -o "$tmp/benchtool" ./testdata/bench/benchtool || die "cannot build benchtool"
bt=$tmp/benchtool

declare -A why # stack -> why it cannot run
husk=
# What is measured, named when it is built: commits made while the bench
# runs must not relabel it.
husk_rev="$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD \
	-- cmd fusefs ext3 squash sandbox 2>/dev/null || echo ' + uncommitted changes')"
if [[ " $stacks " == *" a "* ]]; then
	if [ -n "${HUSK_BIN:-}" ]; then
		cp "$HUSK_BIN" "$tmp/husk"
		husk_rev="$HUSK_BIN (HUSK_BIN)"
	elif out=$(go build -o "$HUSK_CACHE/husk" ./cmd/husk 2>&1); then
		cp "$HUSK_CACHE/husk" "$tmp/husk" # a private copy: others may rebuild theirs
	else
		why[a]="husk does not build: $(echo "$out" | head -3 | tr '\n' ' ')"
	fi
	[ -f "$tmp/husk" ] && chmod 0755 "$tmp/husk" && husk=$tmp/husk
fi

# --- images -----------------------------------------------------------------
rootfs=$HUSK_CACHE/rootfs
if [ ! -d "$rootfs" ]; then
	note "no $rootfs yet: building it with testdata/mkimage.sh"
	bash "$here/mkimage.sh" "${husk:-/bin/false}" >/dev/null || true
	[ -d "$rootfs" ] || die "no Debian root filesystem in $rootfs (see testdata/mkimage.sh)"
fi

# mksif OUT.sif SQUASHFS: wrap, unless OUT is already newer than SQUASHFS.
mksif() {
	[ "$1" -nt "$2" ] && return 0
	"$bt" mk "$1" "$2"
	chmod 0644 "$1"
}

# base: the Debian rootfs, as `apptainer build` packs it (gzip, 128 KiB blocks).
base_sqfs=$HUSK_CACHE/bench-debian.sqfs
if [ ! -f "$base_sqfs" ] || [ "$rootfs" -nt "$base_sqfs" ]; then
	note "mksquashfs $rootfs (once)"
	cache_tmp+=("$base_sqfs.tmp")
	mksquashfs "$rootfs" "$base_sqfs.tmp" -noappend -comp gzip -quiet >/dev/null
	mv "$base_sqfs.tmp" "$base_sqfs"
fi
base_sif=$HUSK_CACHE/bench-debian.sif
mksif "$base_sif" "$base_sqfs"

# big: base plus /bigfile (1 GiB from /dev/urandom) and /bigdir (100,000
# empty files), appended to a copy of the base squashfs.
big_sif=$HUSK_CACHE/bench-big.sif
large_sif=$HUSK_CACHE/bench-large.sif
if [ "$skip_big" != 1 ]; then
	big_sqfs=$HUSK_CACHE/bench-big.sqfs
	if [ ! -f "$big_sqfs" ] || [ "$base_sqfs" -nt "$big_sqfs" ]; then
		note "building $big_sqfs: 1 GiB random file and a 100,000-entry directory (once)"
		cache_tmp+=("$big_sqfs.tmp")
		mkdir -p "$tmp/stage-big/bigdir"
		head -c 1G /dev/urandom >"$tmp/stage-big/bigfile"
		(cd "$tmp/stage-big/bigdir" && seq -f 'f%06g' 0 99999 | xargs touch)
		cp "$base_sqfs" "$big_sqfs.tmp"
		mksquashfs "$tmp/stage-big" "$big_sqfs.tmp" -quiet >/dev/null # appends
		mv "$big_sqfs.tmp" "$big_sqfs"
		rm -rf "$tmp/stage-big"
	fi
	mksif "$big_sif" "$big_sqfs"
	# large: about ten times the base's entries: the host's /usr/share,
	# /usr/include and /usr/local/go (if there) appended as /share, /include
	# and /go.
	large_sqfs=$HUSK_CACHE/bench-large.sqfs
	if [ ! -f "$large_sqfs" ] || [ "$base_sqfs" -nt "$large_sqfs" ]; then
		note "building $large_sqfs: base plus host trees (once, a few minutes)"
		cache_tmp+=("$large_sqfs.tmp")
		extra=(/usr/share /usr/include)
		[ -d /usr/local/go ] && extra+=(/usr/local/go)
		cp "$base_sqfs" "$large_sqfs.tmp"
		mksquashfs "${extra[@]}" "$large_sqfs.tmp" -quiet >/dev/null
		mv "$large_sqfs.tmp" "$large_sqfs"
	fi
	mksif "$large_sif" "$large_sqfs"
fi

# The tarball for the untar workload: the first 20,000 entries (sorted) of
# the host's /usr/share, directories and files under 64 KiB (the workload is
# about many files, not bytes), all owner-writable so the user can delete
# them.
tree_tar=$HUSK_CACHE/bench-tree20k.tar
if [ ! -f "$tree_tar" ]; then
	cache_tmp+=("$tree_tar.tmp")
	(cd /usr/share && find . -xdev ! -path . \( -type d -o -size -64k \) | LC_ALL=C sort |
		awk 'NR <= 20000' >"$tmp/tree.list")
	tar -C /usr/share -cf "$tree_tar.tmp" --no-recursion --mode=u+w -T "$tmp/tree.list"
	mv "$tree_tar.tmp" "$tree_tar"
	chmod 0644 "$tree_tar"
fi
# Every stack gets this directory as /tmp (husk with -B): the host's /tmp can
# hold other people's FUSE mounts, which a recursive bind would drag in.
ctmp=$tmp/ctmp
mkdir -p "$ctmp"
chmod 1777 "$ctmp"
ln "$tree_tar" "$ctmp/tree.tar" 2>/dev/null || cp "$tree_tar" "$ctmp/tree.tar"
tree_entries=$(tar -tf "$ctmp/tree.tar" | wc -l)

declare -A off # image -> partition offset
for s in "$base_sif" "$big_sif" "$large_sif"; do
	[ -f "$s" ] && off[$s]=$("$bt" part "$s" | cut -d' ' -f1)
done

# --- overlay templates (2 GiB, sparse, upper/ work/ and upper/bench) -------
# Root-owned layout for (b) and (c): in (b) root is the user's namespace root.
mkdir -p "$tmp/stage-root/upper/bench" "$tmp/stage-root/work" "$tmp/run"
chmod 0755 "$tmp/stage-root"/* "$tmp/stage-root/upper/bench"
truncate -s 2048M "$tmp/tmpl-root.img"
mkfs.ext3 -q -d "$tmp/stage-root" "$tmp/tmpl-root.img"
# For (a), the user's own: husk overlay create, falling back to mkfs.ext3 -d
# with the layout `apptainer overlay create` makes for the user (uid-owned).
chown "$user" "$tmp/run"
tmpl_how="mkfs.ext3 -d (2 GiB sparse; upper/ work/ upper/bench)"
tmpl_a_how=
if [ -n "$husk" ] && "$bt" run -user "$user" -log "$tmp/tmpl.log" -- "$husk" overlay create \
	--sparse --size 2048 --create-dir /bench "$tmp/run/tmpl.img" >"$tmp/tmpl.res" &&
	read -r _ st _ <"$tmp/tmpl.res" && [ "$st" = 0 ] && [ -f "$tmp/run/tmpl.img" ]; then
	mv "$tmp/run/tmpl.img" "$tmp/tmpl-user.img"
	tmpl_a_how="husk overlay create --sparse --size 2048 --create-dir /bench"
else
	rm -f "$tmp/tmpl-user.img"
	mkdir -p "$tmp/stage-user/upper/bench" "$tmp/stage-user/work"
	chmod 0755 "$tmp/stage-user"/* "$tmp/stage-user/upper/bench"
	chown -R "$uid:$uid" "$tmp/stage-user"
	truncate -s 2048M "$tmp/tmpl-user.img"
	mkfs.ext3 -q -d "$tmp/stage-user" "$tmp/tmpl-user.img"
	tmpl_a_how="$tmpl_how, owned by uid $uid"
fi

# --- workloads ----------------------------------------------------------------
# name, group (the brief's numbering), image, cold (drop caches before each
# run), shell command run inside the container. /bench is a directory in the
# overlay's upper/ that the stack's user owns. Names ending in -ro (group 9,
# beyond the issue's list) run without an overlay, the usual `husk exec`:
# (b) is then squashfuse_ll alone and (c) the loop squashfs alone.
W=(
	"true|1|base|0|true"
	"find|2|base|0|find / -xdev | wc -l"
	"python|3|base|0|python3 -c 'import json, email, http.client, sqlite3, asyncio'"
	"readusr|4|base|0|find /usr -type f -print0 | xargs -0 -r -n 256 cat >/dev/null"
	"readusr-2p|4|base|0|find /usr -type f -print0 | xargs -0 -r -n 256 -P 2 cat >/dev/null"
	"bigread|5|big|0|dd if=/bigfile of=/dev/null bs=1M status=none"
	"bigread-cold|5|big|1|dd if=/bigfile of=/dev/null bs=1M status=none"
	"untar|6|base|0|mkdir /bench/t && tar -xof /tmp/tree.tar -C /bench/t && rm -rf /bench/t"
	"write256|7|base|0|dd if=/dev/zero of=/bench/f bs=1M count=256 conv=fsync status=none"
	"write1g|7|base|0|dd if=/dev/zero of=/bench/f bs=1M count=1024 conv=fsync status=none"
	"find-large|8|large|0|find / -xdev | wc -l"
	"python-large|8|large|0|python3 -c 'import json, email, http.client, sqlite3, asyncio'"
	"lookup100k|8|big|0|stat /bigdir/f050000 >/dev/null"
	"python-ro|9|base|0|python3 -c 'import json, email, http.client, sqlite3, asyncio'"
	"readusr-ro|9|base|0|find /usr -type f -print0 | xargs -0 -r -n 256 cat >/dev/null"
)
declare -A img=([base]=$base_sif [big]=$big_sif [large]=$large_sif)

selected=()
for w in "${W[@]}"; do
	IFS='|' read -r name grp im cold cmd <<<"$w"
	if [ -n "$only" ] && [[ " ${only//,/ } " != *" $name "* ]] &&
		[[ " ${only//,/ } " != *" $grp "* ]]; then
		continue
	fi
	if [ "$im" != base ] && [ "$skip_big" = 1 ]; then
		continue
	fi
	selected+=("$w")
done
[ ${#selected[@]} -gt 0 ] || die "BENCH_ONLY=$only selects no workload"

# run_one STACK SIF COLD RSS CMD LOG [RO]: one measured container run with a
# fresh overlay, or none when RO is 1. Sets ns, rc, kib (summed peak RSS of husk or of the helper
# daemons when RSS=1; sampling costs CPU, so timed runs do not sample) and
# pss (the peak of their summed PSS, sampled alike).
run_one() {
	local s=$1 sif=$2 cold=$3 rss=$4 cmd=$5 log=$6 ro=${7:-0} st=0
	local ov=$tmp/run/ov.img dir=$tmp/run/mnt
	rm -rf "$dir" "$ov" "$tmp/run/pids"
	[ "$s" = a ] || mkdir -p "$dir"
	if [ "$ro" = 1 ]; then
		ov=-
	elif [ "$s" = a ]; then
		cp --sparse=always "$tmp/tmpl-user.img" "$ov"
	else
		cp --sparse=always "$tmp/tmpl-root.img" "$ov"
	fi
	if [ "$s" != c ]; then
		[ "$ov" = - ] || chown "$user:" "$ov"
		[ -d "$dir" ] && chown "$user:" "$dir"
	fi
	[ "$ov" = - ] || chmod 0600 "$ov"
	sync
	[ "$cold" = 1 ] && echo 3 >/proc/sys/vm/drop_caches
	local run=("$bt" run -log "$log")
	case $s in
	a)
		[ "$rss" = 1 ] && run+=(-rss "$husk")
		run+=(-user "$user" -- "$husk" exec -B "$ctmp:/tmp")
		[ "$ov" = - ] || run+=(--overlay "$ov")
		run+=("$sif" sh -c "$cmd")
		;;
	b)
		[ "$rss" = 1 ] && run+=(-rss squashfuse_ll,fuse2fs,fuse-overlayfs)
		run+=(-user "$user" -- unshare -Ur --mount sh "$here/bench/helperstack.sh"
			"$sif" "${off[$sif]}" "$ov" "$dir" "$ctmp" "$tmp/run/pids" "$cmd")
		;;
	c)
		run+=(-- unshare -m sh "$here/bench/kernelstack.sh" "$sif" "${off[$sif]}" "$ov" "$dir"
			"$ctmp" "$cmd")
		;;
	esac
	echo "--- $(date -u +%T) ${run[*]}" >>"$log"
	"${run[@]}" >"$tmp/res" &
	cur_pid=$!
	wait "$cur_pid" || st=$?
	cur_pid=
	ns=0 rc=$st kib=0 pss=0
	[ "$st" = 0 ] && read -r ns rc kib pss <"$tmp/res"
	rm -rf "$dir" "$tmp/run/ov.img" "$tmp/run/pids"
	return 0
}

declare -A desc=([a]="husk (user)" [b]="helper stack (user)" [c]="kernel stack (root)")
for s in $stacks; do
	[ -n "${why[$s]:-}" ] && continue
	case $s in
	a) [ -n "$husk" ] || { why[a]="no husk binary"; continue; } ;;
	b | c) ;;
	*) die "unknown stack $s (BENCH_STACKS takes a, b, c)" ;;
	esac
	run_one "$s" "$base_sif" 0 0 true "$tmp/log-$s-smoke"
	if [ "$rc" != 0 ]; then
		why[$s]="\`true\` failed (exit $rc): $(grep -v '^---' "$tmp/log-$s-smoke" | tail -2 |
			tr '\n' ' ')"
	fi
done
for s in a b c; do
	if [[ " $stacks " != *" $s "* ]]; then
		why[$s]=${why[$s]:-"not selected (BENCH_STACKS)"}
	fi
	[ -n "${why[$s]:-}" ] && note "stack ($s) ${desc[$s]} cannot run: ${why[$s]}"
done

# ms LIST...: the median of nanosecond values, in ms.
median_ms() {
	printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END {
		if (NR == 0) exit
		m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
		printf "%.0f", m / 1e6 }'
}
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (x > 0 && y > 0) printf "%.2f", x / y }'; }
mib() { awk -v k="$1" 'BEGIN { if (k > 0) printf "%.1f", k / 1024 }'; }

# --- report -----------------------------------------------------------------
ver() { "$@" 2>&1 | head -1 || true; }
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
sif_info() {
	local inodes
	inodes=$(unsquashfs -s -o "${off[$1]}" "$1" 2>/dev/null |
		awk '/^Number of inodes/ { print $4 }')
	echo "$(basename "$1") ($(du -m --apparent-size "$1" | cut -f1) MB, $inodes inodes)"
}
declare -A what=(
	[true]='mount, `true`, unmount'
	[find]='`find / -xdev`, counted by `wc -l`'
	[python]='python3 imports json, email, http.client, sqlite3, asyncio'
	[readusr]='read every file in /usr once (`find -print0`, `xargs -0 cat`)'
	[readusr-2p]='the same, 2 readers in parallel (`xargs -P 2`)'
	[bigread]='sequential read of a 1 GiB random file, page cache warm'
	[bigread-cold]='the same, caches dropped before each run'
	[untar]="untar $tree_entries entries into the overlay, then \`rm -rf\` them"
	[write256]='write 256 MiB into the overlay, fsync (`dd conv=fsync`)'
	[write1g]='write 1 GiB into the overlay, fsync'
	[find-large]='`find / -xdev`, counted, on the 10x image'
	[python-large]='python3 imports on the 10x image'
	[lookup100k]='`stat` of one name in a 100,000-entry directory'
	[python-ro]='python3 imports, no overlay: (b) squashfuse_ll alone, (c) squashfs alone'
	[readusr-ro]='read every file in /usr once, no overlay'
)
# steal_pct START END: the share of CPU time stolen by the hypervisor between
# two "cpu" lines of /proc/stat (user nice system idle iowait irq softirq
# steal ...), which makes a virtual machine's times noisy.
steal_pct() {
	[ -n "$1" ] || { echo "unknown"; return; }
	awk -v a="$1" -v b="$2" 'BEGIN {
		na = split(a, x); split(b, y); tot = 0
		for (i = 2; i <= 9 && i <= na; i++) tot += y[i] - x[i]
		if (tot <= 0) { print "unknown"; exit }
		printf "%.1f%%", 100 * (y[9] - x[9]) / tot }'
}

# report [REMARK]: the Markdown result, for the completed workloads.
report() {
	local stamp outfile end_load steal
	reported=1
	end_load=$(cut -d' ' -f1-3 /proc/loadavg)
	steal=$(steal_pct "${start_cpu:-}" "$(head -1 /proc/stat)")
	stamp=$(date -u +%Y-%m-%dT%H%MZ)
	outfile=$HUSK_CACHE/bench-$stamp.md
	report_md "${1:-}" | tee "$outfile"
	note "written to $outfile"
}
# fuse_params: the fuse module's parameters that change how fast a FUSE
# round trip is, where the kernel has them (wake_here, a patch of some
# kernels: FUSE wakes the other side of a round trip on the waking CPU;
# README, Performance).
fuse_params() {
	local f=/sys/module/fuse/parameters/wake_here
	[ -r "$f" ] && echo " (fuse wake_here=$(cat "$f"))"
}

report_md() {
	echo "## husk benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	[ -n "$1" ] && echo "**$1**" && echo
	echo "- machine: $cpu, $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' \
		/proc/meminfo), kernel $(uname -r)$(fuse_params); load average $start_load at the start, \
$end_load at the end; steal time (CPU the hypervisor gave to others) $steal of the run"
	echo "- husk: $husk_rev, $(go version | cut -d' ' -f3)"
	echo "- helpers: $(ver squashfuse_ll --version); fuse2fs $(ver fuse2fs -V |
		awk '{ print $2 }') ($(fuse2fs -V 2>&1 | sed -n 's/^FUSE library version: /libfuse /p'));\
 $(fuse-overlayfs --version 2>&1 | grep -m1 "fuse-overlayfs: version" || true); $(ver mksquashfs -version)"
	echo "- images: $(sif_info "$base_sif") (Debian bookworm minbase + python3)\
$([ -f "$large_sif" ] && [ "$skip_big" != 1 ] && echo "; 10x: $(sif_info "$large_sif") (base\
 + host /usr/share, /usr/include, /usr/local/go); big: $(sif_info "$big_sif") (base + /bigfile\
 + /bigdir)")"
	echo "- overlay: a fresh 2 GiB sparse ext3 image for every run; (a): $tmpl_a_how;\
 (b), (c): $tmpl_how, owned by root"
	echo "- $runs timed runs per cell, median in ms; each includes mount and unmount; one"\
		"untimed run before them samples peak RSS (VmHWM, every 5 ms, summed over the husk"\
		"processes or over the three helper daemons) and warms the page cache; PSS is the"\
		"peak of the processes' summed proportional set size, sampled at the same instants"\
		"(pages they share, such as husk's executable, counted once; per-process peaks not"\
		"added across times), the memory they take together"
	echo
	echo "| # | workload | (a) husk ms | (b) helpers ms | (c) kernel ms | a/b | a/c |"\
		"husk RSS MiB | helpers RSS MiB | husk PSS MiB | helpers PSS MiB |"
	echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for w in "${completed[@]}"; do
		IFS='|' read -r name grp _ _ _ <<<"$w"
		cell() {
			if [ -n "${why[$1]:-}" ]; then echo "n/a"
			elif [ -n "${fail[$1,$name]:-}" ]; then echo "FAIL"
			else echo "${med[$1,$name]:-}"; fi
		}
		echo "| $grp | $name: ${what[$name]} | $(cell a) | $(cell b) | $(cell c) |\
 $(ratio "${med[a,$name]:-}" "${med[b,$name]:-}") | $(ratio "${med[a,$name]:-}" \
"${med[c,$name]:-}") | $(mib "${rssk[a,$name]:-}") | $(mib "${rssk[b,$name]:-}") |\
 $(mib "${pssk[a,$name]:-}") | $(mib "${pssk[b,$name]:-}") |"
	done
	echo
	for s in a b c; do
		[ -n "${why[$s]:-}" ] && echo "- ($s) ${desc[$s]} did not run: ${why[$s]}"
	done
	for k in "${!fail[@]}"; do
		echo "- (${k%%,*}) ${k#*,} FAILED: ${fail[$k]}"
	done
	cat <<'NOTES'
- (a) `husk exec -B CTMP:/tmp --overlay OV.img IMAGE.sif sh -c WORKLOAD` as user husktest
  (uid 1500), started with that user's uid, gids, HOME and USER (what runuser does, without
  PAM). In all three stacks /tmp is the same private directory CTMP (it holds the tarball).
- (b) as husktest in `unshare -Ur --mount`: `squashfuse_ll -f -o allow_other,ro,offset=N`,
  `fuse2fs -f -o allow_other,fakeroot`, `fuse-overlayfs -f -o allow_other,lowerdir,upperdir,
  workdir,noacl` mounted by the helpers themselves inside the namespace (no fusermount, as
  Apptainer's user-namespace mode), rbinds of /proc /dev /sys, CTMP on /tmp, chroot;
  unmount waits for every daemon to exit. The payload runs as the namespace's root (the
  user), where husk's runs as the user's uid. Debian's fuse2fs 1.47.0 writes ext3 without
  its journal.
- (c) as root in `unshare -m`: loop squashfs (offset=N), loop ext3, kernel overlayfs, the same
  binds, chroot, `umount`.
- Caches: the host page cache is warm (the SIF file is cached) except for bigread-cold, where
  `echo 3 > /proc/sys/vm/drop_caches` runs before every run of every stack. `sync` runs
  before every run, outside the timing. Stacks are interleaved run by run.
NOTES
	echo
	echo "<details><summary>raw times (ms)</summary>"
	echo
	for w in "${completed[@]}"; do
		IFS='|' read -r name _ _ _ _ <<<"$w"
		for s in a b c; do
			[ -n "${raw[$s,$name]:-}" ] || continue
			# shellcheck disable=SC2086
			echo "- $name ($s):$(printf ' %.0f' $(printf '%s\n' ${raw[$s,$name]} |
				awk '{ print $1 / 1e6 }'))"
		done
	done
	echo
	echo "</details>"
}

start_load=$(cut -d' ' -f1-3 /proc/loadavg)
start_cpu=$(head -1 /proc/stat)
declare -A med rssk pssk raw fail
n=0
for w in "${selected[@]}"; do
	IFS='|' read -r name grp im cold cmd <<<"$w"
	ro=0
	[[ $name == *-ro ]] && ro=1
	n=$((n + 1))
	note "[$n/${#selected[@]}] $name: $cmd"
	# One untimed run per stack first: it samples peak RSS and warms the
	# host's page cache with the SIF, as every timed run after it finds it.
	for s in a b c; do
		[ -n "${why[$s]:-}" ] && continue
		log=$tmp/log-$s-$name
		run_one "$s" "${img[$im]}" "$cold" 1 "$cmd" "$log" "$ro"
		if [ "$rc" != 0 ]; then
			fail[$s,$name]="exit $rc: $(grep -v '^---' "$log" | tail -2 | tr '\n' ' ')"
			note "  ($s) failed: ${fail[$s,$name]}"
			continue
		fi
		rssk[$s,$name]=$kib
		pssk[$s,$name]=$pss
	done
	# Timed runs, the stacks interleaved so that load from elsewhere on the
	# machine spreads over all of them alike.
	for ((r = 1; r <= runs; r++)); do
		for s in a b c; do
			[ -n "${why[$s]:-}" ] || [ -n "${fail[$s,$name]:-}" ] && continue
			run_one "$s" "${img[$im]}" "$cold" 0 "$cmd" "$tmp/log-$s-$name" "$ro"
			if [ "$rc" != 0 ]; then
				fail[$s,$name]="exit $rc in run $r"
				note "  ($s) failed in run $r: $(grep -v '^---' "$tmp/log-$s-$name" |
					tail -2 | tr '\n' ' ')"
				continue
			fi
			raw[$s,$name]="${raw[$s,$name]:-} $ns"
		done
	done
	for s in a b c; do
		if [ -n "${raw[$s,$name]:-}" ] && [ -z "${fail[$s,$name]:-}" ]; then
			# shellcheck disable=SC2086
			med[$s,$name]=$(median_ms ${raw[$s,$name]})
		fi
	done
	note "  median ms: a=${med[a,$name]:--} b=${med[b,$name]:--} c=${med[c,$name]:--}"
	completed+=("$w")
done

report
