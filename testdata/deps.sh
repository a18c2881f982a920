# shellcheck shell=bash
# deps.sh is sourced by the other scripts here. It makes sure the machine has
# what husk's tests and demo need, installing it when run as root (as CI is),
# and otherwise says exactly what is missing.

HUSK_CACHE=${HUSK_TEST_CACHE:-/var/tmp/husk-cache}
HUSK_TEST_USER=${HUSK_TEST_USER:-husktest}
export HUSK_TEST_CACHE=$HUSK_CACHE HUSK_TEST_USER

husk_need_tools() {
	local missing=() t
	# tool:package pairs; the oracles and the helper stack husk is compared with.
	for t in mksquashfs:squashfs-tools unsquashfs:squashfs-tools e2fsck:e2fsprogs \
		debugfs:e2fsprogs mkfs.ext3:e2fsprogs debootstrap:debootstrap \
		fusermount3:fuse3 fuse-overlayfs:fuse-overlayfs fuse2fs:fuse2fs \
		squashfuse_ll:squashfuse setfattr:attr setfacl:acl newuidmap:uidmap \
		newgidmap:uidmap; do
		command -v "${t%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin \
			command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
	done
	# Building husk: libdeflate (linked statically) decodes gzip squashfs.
	for t in /usr/include/libdeflate.h:libdeflate-dev; do
		[ -e "${t%%:*}" ] || missing+=("${t#*:}")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		if [ "$(id -u)" = 0 ]; then
			echo "deps: installing ${missing[*]}" >&2
			apt-get update -qq >/dev/null
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				$(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
		else
			echo "deps: missing packages: $(printf '%s\n' "${missing[@]}" | sort -u |
				tr '\n' ' ')(run as root, or: sudo apt-get install them)" >&2
			return 1
		fi
	fi
	export PATH=$PATH:/usr/sbin:/sbin
}

husk_need_fuse() {
	# Distributions ship /dev/fuse as 0666; some VMs and containers do not.
	if [ ! -c /dev/fuse ]; then
		echo "deps: /dev/fuse is missing (modprobe fuse)" >&2
		return 1
	fi
	if [ "$(stat -c %a /dev/fuse)" != 666 ]; then
		if [ "$(id -u)" = 0 ]; then
			chmod 0666 /dev/fuse
		else
			echo "deps: /dev/fuse is not mode 0666; ask root to chmod 0666 /dev/fuse" >&2
			return 1
		fi
	fi
}

husk_need_user() {
	# The rootless paths are tested as this ordinary user.
	if ! id "$HUSK_TEST_USER" >/dev/null 2>&1; then
		if [ "$(id -u)" = 0 ]; then
			useradd -m -u 1500 -s /bin/bash "$HUSK_TEST_USER"
		else
			echo "deps: user $HUSK_TEST_USER is missing (root: useradd -m -u 1500 $HUSK_TEST_USER)" >&2
			return 1
		fi
	fi
	# --fakeroot maps a subordinate range when the user has one (useradd
	# usually allocates it; older systems do not).
	local f
	for f in /etc/subuid /etc/subgid; do
		grep -q "^$HUSK_TEST_USER:" "$f" 2>/dev/null && continue
		if [ "$(id -u)" = 0 ]; then
			echo "$HUSK_TEST_USER:100000:65536" >>"$f"
		else
			echo "deps: $f has no range for $HUSK_TEST_USER" \
				"(root: echo $HUSK_TEST_USER:100000:65536 >>$f)" >&2
			return 1
		fi
	done
}

husk_need_cache() {
	mkdir -p "$HUSK_CACHE"
	chmod 0755 "$HUSK_CACHE"
}
