#!/bin/bash
# pjdfstest-run.sh PJDFSTEST_DIR OUT WORKDIR: runs every pjdfstest .t file of
# PJDFSTEST_DIR (a built pjdfstest tree: the pjdfstest binary and tests/)
# in WORKDIR, one at a time, and writes each one's TAP output to the same
# relative path under OUT (OUT/chmod/00.t ...), for posix.sh to count.
#
# Only bash and coreutils: it runs inside minimal container images, which
# have neither prove nor openssl (testdata/posix/bin has a stand-in).
#
# Each failing assertion gets " [at chmod/00.t:42]", the line of the .t file
# that made it: the tests run from a shadow tree in OUT/.shadow whose
# misc.sh wraps pjdfstest's expect(), and bash gives the caller's line.
set -u
pjd=${1:?usage: pjdfstest-run.sh PJDFSTEST_DIR OUT WORKDIR}
out=${2:?usage: pjdfstest-run.sh PJDFSTEST_DIR OUT WORKDIR}
work=${3:?usage: pjdfstest-run.sh PJDFSTEST_DIR OUT WORKDIR}
limit=${PJDFSTEST_TIMEOUT:-1800}
export PATH=$(cd "$(dirname "$0")" && pwd)/bin:$PATH
tests=$pjd/tests

shadow=$out/.shadow
rm -rf "$shadow"
mkdir -p "$shadow"
ln -s "$pjd/pjdfstest" "$shadow/pjdfstest"
ln -s "$tests/conf" "$shadow/conf"
cp "$tests/misc.sh" "$shadow/misc.sh"
cat >>"$shadow/misc.sh" <<'WRAP'

# Added by husk's pjdfstest-run.sh: tag failures with the .t line.
eval "pjd_orig_expect() $(declare -f expect | tail -n +2)"
expect()
{
	local i where="" tmp
	for (( i = 0; i < ${#BASH_LINENO[@]} - 1; i++ )); do
		case "${BASH_SOURCE[i+1]}" in
		*.t) where="${BASH_SOURCE[i+1]#"$PJD_SHADOW/"}:${BASH_LINENO[i]}"; break ;;
		esac
	done
	tmp=$(mktemp)
	pjd_orig_expect "$@" >"$tmp"
	while IFS= read -r line; do
		case "$line" in
		"not ok "*) echo "$line [at $where]" ;;
		*) echo "$line" ;;
		esac
	done <"$tmp"
	rm -f "$tmp"
}
WRAP
export PJD_SHADOW=$shadow

mkdir -p "$work" && cd "$work" || exit 1
: >"$out/times.log"
for t in $(cd "$tests" && find . -name '*.t' | sort); do
	t=${t#./}
	mkdir -p "$out/$(dirname "$t")" "$shadow/$(dirname "$t")"
	ln -sf "$tests/$t" "$shadow/$t"
	start=$(date +%s)
	timeout "$limit" bash "$shadow/$t" >"$out/$t" 2>"$out/$t.err"
	rc=$?
	echo "$t rc=$rc $(( $(date +%s) - start ))s" >>"$out/times.log"
	# A timed-out file leaves a short TAP stream; say why.
	if [ "$rc" = 124 ]; then
		echo "not ok 999999 - pjdfstest-run: timed out after ${limit}s" >>"$out/$t"
	fi
	[ -s "$out/$t.err" ] || rm -f "$out/$t.err"
done
