#!/bin/sh
# Runs inside a privileged eci container, copied to /tmp/matrix.sh: tries to undo the
# container's initial mounts in the eight scenarios {same, new mount namespace} x {pivot_root or
# not} x {chroot or not} and prints one "SCENARIO OPERATION ANSWER" line per attempt. The
# initial mounts it uses: /usr (a read-only bind), /proc/kallsyms (a mask), /proc/sys
# (read-only). Usage: sh /tmp/matrix.sh PROBE [ops SCENARIO]
P=$1
self=/tmp/matrix.sh

ops() { # $1: scenario; the current root shows the initial mounts, or copies of them
    s=$1
    say() { label=$1; shift; echo "$s $label $("$P" "$@")"; }
    say remount-rw remount-rw /usr nosuid,nodev
    say remount-ro remount-ro /usr nosuid,nodev
    say proc-sys-rw remount-rw /proc/sys nosuid,nodev,noexec
    mkdir -p "/tmp/b-$s" "/tmp/t-$s"
    say bind bind /usr "/tmp/b-$s"
    say bind-rw remount-rw "/tmp/b-$s" nosuid,nodev
    say umount-mask umount /proc/kallsyms
    say umount-mask-lazy umount /proc/kallsyms detach
    say umount-usr umount /usr detach
    say move move /usr "/tmp/t-$s"
    say tmpfs mount tmpfs "/tmp/t-$s" tmpfs size=1m
    say umount-tmpfs umount "/tmp/t-$s"
    # A bind of /proc without its submounts would show what the masks on it cover.
    mkdir -p "/tmp/p-$s"
    say bind-proc bind /proc "/tmp/p-$s"
    if [ "$(head -c 1 "/tmp/p-$s/kallsyms" 2>/dev/null | wc -c)" = 0 ]; then
        echo "$s proc-copy masked"
    else
        echo "$s proc-copy REVEALED"
    fi
    if [ "$(head -c 1 /proc/kallsyms | wc -c)" = 0 ]; then
        echo "$s kallsyms masked"
    else
        echo "$s kallsyms REVEALED"
    fi
}

if [ "${2:-}" = ops ]; then
    ops "$3"
    exit 0
fi

# A new root for chroot and pivot_root: a recursive bind of the current one (whose /tmp is this
# /tmp, so the script and /tmp/old are there too; the root itself is read-only).
new_root() {
    mkdir -p "/tmp/root-$1" /tmp/old && "$P" rbind / "/tmp/root-$1" >/dev/null
}

# The four {pivot_root, chroot} combinations in the current mount namespace. pivot_root moves
# every process of the namespace, so it comes last.
four() {
    n=$1
    (ops "$n-plain")
    new_root "$n-c" && chroot "/tmp/root-$n-c" sh "$self" "$P" ops "$n-chroot"
    new_root "$n-p" || exit 1
    cd "/tmp/root-$n-p" && pivot_root . tmp/old && cd / || { echo "$n pivot_root failed"; exit 1; }
    (ops "$n-pivot")
    new_root "$n-pc" && chroot "/tmp/root-$n-pc" sh "$self" "$P" ops "$n-pivot-chroot"
}

if [ "${2:-}" = four-in ]; then
    four "$3"
    exit 0
fi

# New mount namespace first (it copies the untouched container's), then the same one.
unshare --mount --propagation private sh "$self" "$P" four-in new
four same
