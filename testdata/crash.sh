#!/usr/bin/env bash
# crash.sh [KILLS]: crash safety of the whole stack, measured. As the
# unprivileged test user it runs `husk exec --overlay o.img debian.sif
# python3 work.py`, a workload that makes, appends to, fsyncs, renames over
# and deletes files in /data, and SIGKILLs every husk process (the FUSE
# server stage first) at a random moment. Then it runs husk once more on
# the image (which replays the journal), and checks:
#   - e2fsck -fn finds nothing to fix;
#   - every file whose fsync returned (the workload logs "sync ID PATH HASH"
#     to a log in $HOME, outside the image, and fsyncs it) is at its path,
#     or at a later path it was renamed to, with its synced content or a
#     longer prefix of what was appended later; unless it was later
#     deleted or renamed over;
#   - every file in /data is one the log made there, with such content.
# Files are read from the image with debugfs rdump, not through husk.
# Prints: "crash: N kills, N e2fsck failures, N lost synced files, ..."
# and exits 1 on any failure. HUSK_CRASH_SEED repeats a run.
set -euo pipefail
cd "$(dirname "$0")/.."
. testdata/deps.sh
husk_need_tools
husk_need_fuse
husk_need_user
husk_need_cache

kills=${1:-200}
seed=${HUSK_CRASH_SEED:-$(date +%s)}
RANDOM=$((seed % 32768))
work=$HUSK_CACHE/crash
mkdir -p "$work"
chmod 0755 "$work"
husk=$work/husk
go build -o "$husk" ./cmd/husk
chmod 0755 "$husk"
sif=$(testdata/mkimage.sh "$husk")

if [ "$(id -u)" != 0 ]; then
	echo "crash: run as root (it runs husk as $HUSK_TEST_USER and kills its processes)" >&2
	exit 1
fi
home=$(getent passwd "$HUSK_TEST_USER" | cut -d: -f6)
as_user=(runuser -u "$HUSK_TEST_USER" --)
dir=$home/husk-crash # bound into the container as $HOME
rm -rf "$dir"
"${as_user[@]}" mkdir -p "$dir"
img=$dir/overlay.img
"${as_user[@]}" "$husk" overlay create --size 64 --create-dir /data "$img"
out=$work/out # failed runs: logs and images
rm -rf "$out"
mkdir -p "$out"

# The workload: python3 in the container. Content of an append is
# random.Random(seed).randbytes(n), so the checker can rebuild it.
cat >"$dir/work.py" <<'EOF'
import hashlib, os, random, sys
logpath, seed, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
log = os.open(logpath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
def L(s, sync=False):
    os.write(log, (s + "\n").encode())
    if sync:
        os.fsync(log)
base = "/data/r%d" % run
os.makedirs("/data", exist_ok=True)
L("run %d" % run)
for name in os.listdir("/data"):  # runs before the previous one
    if name.startswith("r") and int(name[1:]) < run - 1:
        for root, dirs, files in os.walk("/data/" + name, topdown=False):
            for f in files:
                os.unlink(os.path.join(root, f))
            for d in dirs:
                os.rmdir(os.path.join(root, d))
        os.rmdir("/data/" + name)
for i in range(3):
    os.makedirs("%s/d%d" % (base, i))
L("ready", True)
objs = {}  # id -> [path, content]
nxt = 0
def path():
    return "%s/d%d/f%d" % (base, rng.randrange(3), rng.randrange(40))
def at(p):
    return [k for k, o in objs.items() if o[0] == p]
def append(k):
    s, n = rng.getrandbits(63), rng.choice([rng.randrange(1, 5000), rng.randrange(1, 300000)])
    L("append %d %d %d" % (k, s, n))
    data = random.Random(s).randbytes(n)
    with open(objs[k][0], "ab") as f:
        f.write(data)
    objs[k][1] += data
def fsync(k):
    fd = os.open(objs[k][0], os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    L("sync %d %s %s" % (k, objs[k][0], hashlib.sha256(objs[k][1]).hexdigest()[:16]), True)
def create(p):
    global nxt
    k, nxt = nxt, nxt + 1
    L("create %d %s" % (k, p))
    open(p, "wb").close()
    objs[k] = [p, b""]
    return k
def rename(k, p):
    L("rename %d %s" % (k, p))
    os.rename(objs[k][0], p)
    for v in at(p):
        del objs[v]
    objs[k][0] = p
for step in range(100000):
    n = rng.randrange(100)
    if not objs or (n < 15 and len(objs) < 30):
        p = path()
        if not at(p):
            append(create(p))
        continue
    k = rng.choice(list(objs))
    if n < 40:
        append(k)
    elif n < 60:
        fsync(k)
    elif n < 70:  # atomic replace: write a temporary, fsync, rename over
        t = create(objs[k][0] + ".tmp")
        append(t)
        fsync(t)
        rename(t, objs[k][0])
    elif n < 80:
        p = path()
        if p != objs[k][0]:
            rename(k, p)
    elif n < 88:
        L("unlink %d" % k)
        os.unlink(objs[k][0])
        del objs[k]
    elif n < 90:
        os.sync()
    else:
        os.truncate(objs[k][0], len(objs[k][1]))  # no-op size change, still a setattr
L("closed", True)
EOF

# The checker: replays the log into the states each file may be in and
# compares them with the files debugfs dumped from the image.
cat >"$work/check.py" <<'EOF'
import hashlib, os, random, sys
logpath, dump = sys.argv[1], sys.argv[2]
objs, bypath, run = {}, {}, None
class Obj:
    def __init__(s, k, p):
        s.k, s.paths, s.content, s.synced, s.syncpath, s.gone_after = k, [p], b"", None, 0, False
def gone(o):
    if o.synced is not None:
        o.gone_after = True
    if bypath.get(o.paths[-1]) is o:
        del bypath[o.paths[-1]]
for line in open(logpath):
    # A kill inside a write that crosses a page leaves the last line torn;
    # an event is logged before it starts, so a torn one never ran.
    if not line.endswith("\n"):
        break
    f = line.split()
    if not f or f[0] in ("ready",):
        continue
    if f[0] == "run":
        run = int(f[1]); continue
    if f[0] == "closed":
        for o in bypath.values():
            o.synced, o.syncpath, o.gone_after = len(o.content), len(o.paths) - 1, False
        continue
    k = int(f[1])
    if f[0] == "create":
        objs[k] = bypath[f[2]] = Obj(k, f[2]); continue
    o = objs[k]
    if f[0] == "append":
        o.content += random.Random(int(f[2])).randbytes(int(f[3]))
    elif f[0] == "sync":
        if hashlib.sha256(o.content).hexdigest()[:16] != f[3]:
            sys.exit("checker: model hash differs from the log at %r" % line)
        o.synced, o.syncpath, o.gone_after = len(o.content), len(o.paths) - 1, False
    elif f[0] == "rename":
        v = bypath.get(f[2])
        if v is not None and v is not o:
            gone(v)
        bypath.pop(o.paths[-1], None)
        o.paths.append(f[2]); bypath[f[2]] = o
    elif f[0] == "unlink":
        gone(o)
def read(p):
    q = os.path.join(dump, os.path.relpath(p, "/data"))
    return open(q, "rb").read() if os.path.isfile(q) else None
def ok(o, c, least):
    # Appends only extend a file, so every state is a prefix of the last.
    return len(c) >= least and o.content[:len(c)] == c
lost, junk = 0, 0
for o in objs.values():
    if o.synced is None or o.gone_after:
        continue
    cands = o.paths[o.syncpath:]
    if not any((c := read(p)) is not None and ok(o, c, o.synced) for p in cands):
        lost += 1
        print("lost synced file: id %d, synced %d bytes at %s, later paths %s: %s" % (
            o.k, o.synced, o.paths[o.syncpath], cands[1:],
            ["%s: %s" % (p, "missing" if read(p) is None else "%d bytes, hash %s" % (
                len(read(p)), hashlib.sha256(read(p)).hexdigest()[:16])) for p in cands]))
for root, dirs, files in os.walk(os.path.join(dump, "r%d" % run)):
    for name in files:
        p = "/data/" + os.path.relpath(os.path.join(root, name), dump)
        c = read(p)
        if not any(p in o.paths and ok(o, c, 0) for o in objs.values()):
            junk += 1
            print("file from nowhere: %s (%d bytes, hash %s)" % (
                p, len(c), hashlib.sha256(c).hexdigest()[:16]))
print("result lost=%d junk=%d" % (lost, junk))
EOF

# descendants PID: every process below PID, parents first.
descendants() {
	local all
	all=$(ps -e -o pid=,ppid=)
	awk -v root="$1" '{ kids[$2] = kids[$2] " " $1 }
		END { q[0] = root; n = 1
			for (i = 0; i < n; i++) { split(kids[q[i]], k, " ")
				for (j in k) { q[n++] = k[j]; print k[j] } } }' <<<"$all"
}

# fuse_server PIDS: those that have /dev/fuse open.
fuse_server() {
	local p
	for p in "$@"; do
		if ls -l "/proc/$p/fd" 2>/dev/null | grep -q ' /dev/fuse$'; then
			echo "$p"
		fi
	done
}

kills_done=0 fsck_fail=0 lost=0 junk=0 clean=0 replay_fail=0 syncs=0 replays=0 werr=0
for ((run = 0; run < kills; run++)); do
	log=$dir/run.log
	rm -f "$log"
	"${as_user[@]}" touch "$log"
	rseed=$((seed * 1000 + run))
	setsid "${as_user[@]}" "$husk" exec --overlay "$img" "$sif" \
		python3 "$dir/work.py" "$log" "$rseed" "$run" >"$work/run.out" 2>&1 &
	pid=$!
	# Start the clock when the workload is running in the container.
	for ((i = 0; i < 300; i++)); do
		grep -q '^ready' "$log" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.02
	done
	# 10 ms to 1.5 s.
	delay=$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", exp(log(0.01) + r / 32767 * log(150)) }')
	sleep "$delay"
	mapfile -t procs < <(descendants "$pid")
	mapfile -t servers < <(fuse_server "${procs[@]}")
	server=${servers[*]}
	for p in "${servers[@]}" "${procs[@]}" "$pid"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	{ wait "$pid"; } 2>/dev/null || true # killed, or done before the kill
	if grep -q '^closed' "$log"; then
		clean=$((clean + 1))
	else
		kills_done=$((kills_done + 1))
	fi
	syncs=$((syncs + $(grep -c '^sync' "$log" || true)))
	where="seed $seed run $run (workload seed $rseed, kill after ${delay}s,"
	where+=" /dev/fuse held by pids ${server:-none})"
	failed=0
	cp --sparse=always "$img" "$work/killed.img"
	# A non-empty log (s_start != 0) is a commit the replay must finish.
	if [ "$(dumpe2fs -h "$work/killed.img" 2>/dev/null |
		awk '/^Journal start:/ { print $3 }')" != 0 ]; then
		replays=$((replays + 1))
		where+=" (journal to replay)"
	fi
	# The workload must only fail because its file system went away. A
	# traceback without its closing exception line was cut off by the kill
	# itself (the payload dies with the union) and tells nothing.
	if grep -q Traceback "$work/run.out" &&
		grep -qE '^[A-Za-z_.]*(Error|Exception)\b' "$work/run.out" &&
		! grep -qE 'Errno (103|107)|Transport endpoint|connection abort' "$work/run.out"; then
		werr=$((werr + 1)) failed=1
		echo "$where: the workload failed before the kill:"
		tail -5 "$work/run.out"
	fi
	# Replay with husk; its own exit must be clean.
	if ! "${as_user[@]}" "$husk" exec --overlay "$img" "$sif" true >"$work/replay.out" 2>&1; then
		replay_fail=$((replay_fail + 1)) failed=1
		echo "$where: husk replay run failed:"
		cat "$work/replay.out"
	fi
	if ! fsck_out=$(e2fsck -fn "$img" 2>&1); then
		fsck_fail=$((fsck_fail + 1)) failed=1
		echo "$where: e2fsck -fn:"
		echo "$fsck_out"
	fi
	dump=$work/dump
	rm -rf "$dump"
	mkdir -p "$dump"
	debugfs -R "rdump /upper/data/r$run $dump" "$img" >/dev/null 2>&1 || true
	res=$(python3 "$work/check.py" "$log" "$dump" 2>&1) || {
		echo "$where: checker failed: $res"
		exit 1
	}
	l=$(sed -n 's/^result lost=\([0-9]*\) junk=\([0-9]*\)$/\1/p' <<<"$res")
	j=$(sed -n 's/^result lost=\([0-9]*\) junk=\([0-9]*\)$/\2/p' <<<"$res")
	if [ "$l" != 0 ] || [ "$j" != 0 ]; then
		lost=$((lost + l)) junk=$((junk + j)) failed=1
		echo "$where:"
		grep -v '^result' <<<"$res"
	fi
	if [ "$failed" = 1 ]; then
		cp "$log" "$out/run$run.log"
		mv "$work/killed.img" "$out/run$run-killed.img"
		echo "$where: log and killed image kept in $out/run$run.{log,-killed.img}"
		# Repair, so that the next runs measure on their own.
		e2fsck -fy "$img" >/dev/null 2>&1 || true
		chown "$HUSK_TEST_USER" "$img"
	fi
	if (((run + 1) % 20 == 0)); then
		echo "crash: $((run + 1))/$kills runs, $replays with a journal to replay," \
			"$((fsck_fail + lost + junk + replay_fail + werr)) failures so far" >&2
	fi
done
summary="crash: $kills_done kills ($replays left a journal to replay), $clean clean exits,"
summary+=" $syncs fsyncs checked, $werr workload errors,"
summary+=" $fsck_fail e2fsck failures, $lost lost synced files,"
summary+=" $junk files from nowhere, $replay_fail failed replays (seed $seed)"
echo "$summary"
[ $((fsck_fail + lost + junk + replay_fail + werr)) = 0 ]
