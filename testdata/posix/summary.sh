#!/usr/bin/env bash
# summary.sh OUT RUN...: the tables of posix.sh from its results in OUT:
# pjdfstest pass/fail counts per run, every .t file that fails in some run
# with its failed/total assertions per run, and the fsx results. Writes
# every failing assertion (with its .t line) to OUT/failures.txt.
set -uo pipefail
out=${1:?usage: summary.sh OUT RUN...}
shift
runs=("$@")

# tap_counts FILE: "plan ok failed" of one TAP stream; "# TODO" failures
# count as passes, as in prove.
tap_counts() {
	awk '
		/^1\.\.[0-9]+/ { split($0, a, "."); plan = a[3] + 0 }
		/^ok / { ok++ }
		/^not ok / { if ($0 ~ /# TODO/) ok++; else bad++ }
		END { printf "%d %d %d\n", plan, ok, bad }' "$1"
}

# file_status FILE: "-" if missing, "ok" if it passed, else "FAILED/TOTAL".
file_status() {
	[ -f "$1" ] || { echo -; return; }
	local plan ok bad
	read -r plan ok bad < <(tap_counts "$1")
	if [ "$bad" = 0 ] && [ "$plan" -gt 0 ] && [ $((ok + bad)) = "$plan" ]; then
		echo ok
	elif [ $((ok + bad)) != "$plan" ]; then
		echo "$bad/$plan!" # "!": the stream stopped early or has no plan
	else
		echo "$bad/$plan"
	fi
}

have_pjd=false
for r in "${runs[@]}"; do [ -f "$out/$r/res/times.log" ] && have_pjd=true; done

if $have_pjd; then
	echo "pjdfstest: .t files and assertions per run (failed/total)"
	printf '%-12s %14s %16s\n' run files assertions
	for r in "${runs[@]}"; do
		d=$out/$r/res
		[ -f "$d/times.log" ] || continue
		files=0 ffail=0 asserts=0 afail=0
		while read -r t; do
			read -r plan ok bad < <(tap_counts "$d/$t")
			files=$((files + 1)) asserts=$((asserts + plan)) afail=$((afail + bad))
			[ "$(file_status "$d/$t")" = ok ] || ffail=$((ffail + 1))
		done < <(cd "$d" && find . -name '*.t' -not -path './.shadow/*' | sed 's|^\./||' | sort)
		printf '%-12s %14s %16s\n' "$r" "$ffail/$files" "$afail/$asserts"
	done

	echo
	echo "pjdfstest: files failing in some run (failed/total assertions; ! = stream cut short)"
	printf '%-18s' file
	for r in "${runs[@]}"; do printf ' %12s' "$r"; done
	echo
	all=$(for r in "${runs[@]}"; do
		[ -d "$out/$r/res" ] && (cd "$out/$r/res" && find . -name '*.t' -not -path './.shadow/*')
	done | sed 's|^\./||' | sort -u)
	for t in $all; do
		line=$(printf '%-18s' "$t") bad=false
		for r in "${runs[@]}"; do
			s=$(file_status "$out/$r/res/$t")
			[ "$s" = ok ] || [ "$s" = - ] || bad=true
			line+=$(printf ' %12s' "$s")
		done
		$bad && echo "$line"
	done

	# Every failing assertion (not "# TODO" ones), long generated names shortened.
	for r in "${runs[@]}"; do
		[ -f "$out/$r/res/times.log" ] || continue
		echo "== $r"
		(cd "$out/$r/res" && grep -H '^not ok' $(find . -name '*.t' -not -path './.shadow/*' |
			sed 's|^\./||' | sort) 2>/dev/null | grep -v '# TODO') |
			sed -E 's/pjdfstest_[0-9a-f]{32}/N/g; s/[0-9a-f]{40,}(\/[0-9a-f]+)*/LONG/g'
	done >"$out/failures.txt"
	echo
	echo "failing assertions with their .t lines: $out/failures.txt"
fi

have_fsx=false
for r in "${runs[@]}"; do [ -f "$out/$r/res/fsx.rc" ] && have_fsx=true; done
if $have_fsx; then
	echo
	echo "fsx (rc 0 = all operations completed A-OK; persisted = same md5 in a new mount)"
	printf '%-12s %10s %12s %12s %10s %8s\n' run new copy-up miscompares persisted e2fsck
	for r in "${runs[@]}"; do
		d=$out/$r/res
		[ -f "$d/fsx.rc" ] || continue
		new=$(sed -n 's/^fsx-new rc=//p' "$d/fsx.rc")
		cu=$(sed -n 's/^fsx-copyup rc=//p' "$d/fsx.rc")
		mis=$(cat "$d"/fsx-*.log 2>/dev/null | grep -ciE 'miscompar|bad data|corrupt')
		per=no
		[ -s "$d/md5.1" ] && cmp -s "$d/md5.1" "$d/md5.2" && per=yes
		# A copy-up that changed the data counts as a miscompare.
		if [ -s "$d/md5.lower" ] && ! cmp -s "$d/md5.lower" "$d/md5.copied"; then
			mis="$mis+copy-up"
		fi
		fsck=-
		[ -f "$out/$r/e2fsck.log" ] && fsck=$(sed -n 's/^e2fsck rc=//p' "$out/$r/e2fsck.log")
		printf '%-12s %10s %12s %12s %10s %8s\n' "$r" "rc=$new" "rc=$cu" "$mis" "$per" "$fsck"
	done
fi
