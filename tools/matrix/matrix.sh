#!/usr/bin/env bash
# Run ferroloop on the CPython versions the host does not have (3.13, 3.14, 3.15).
#
# They come from Debian's sid packages, installed by debootstrap into a
# separate tree (.matrix/sid, git-ignored), so the host's libc stays untouched.
# Each command runs inside that tree with chroot, in a private mount namespace
# (unshare): /proc, /dev, the project and the host's Rust toolchain are mounted
# only for the duration of the command and vanish with it, whatever happens.
#
#   tools/matrix/matrix.sh tree                 build .matrix/sid (once; ~80 s)
#   tools/matrix/matrix.sh run VER CMD...       CMD in the tree, cwd = project, venv of VER active
#   tools/matrix/matrix.sh build VER            venv .matrix/venv-VER + release build of ferroloop
#   tools/matrix/matrix.sh test VER [ARGS]      build, then pytest and that version's test_asyncio
#   tools/matrix/matrix.sh summary [VER...]     per-version totals of the last test runs
#   tools/matrix/matrix.sh bench VER [ARGS]     build, then the micro-benchmarks (benchmarks/run.py)
#   tools/matrix/matrix.sh shell VER            interactive shell in the tree
set -euo pipefail

PROJ="$(cd "$(dirname "$0")/../.." && pwd)"
MATRIX="$PROJ/.matrix"
# One tree can serve several checkouts (git worktrees): FERROLOOP_SID_TREE.
ROOT="${FERROLOOP_SID_TREE:-$MATRIX/sid}"
VERSIONS="3.13 3.14 3.15"
# The host's Debian mirror serves sid too.
MIRROR="${FERROLOOP_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

die() { echo "matrix: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"

packages() {
    local p="ca-certificates,gcc,libc6-dev"
    for v in $VERSIONS; do
        p="$p,python$v-dev,python$v-venv,libpython$v-testsuite"
    done
    echo "$p"
}

cmd_tree() {
    if [ -f "$ROOT/.ferroloop-tree-ok" ]; then
        return 0
    fi
    command -v debootstrap >/dev/null || {
        echo "matrix: installing debootstrap on the host" >&2
        apt-get install -y -qq debootstrap >/dev/null ||
            { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
    }
    rm -rf "$ROOT"
    mkdir -p "$MATRIX"
    echo "matrix: debootstrap sid into $ROOT" >&2
    debootstrap --variant=minbase --include="$(packages)" sid "$ROOT" "$MIRROR" \
        >"$MATRIX/debootstrap.log" 2>&1 || {
        tail -20 "$MATRIX/debootstrap.log" >&2
        die "debootstrap failed (log: $MATRIX/debootstrap.log)"
    }
    # sid's Release file may be past its Valid-Until when apt runs in here later.
    echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99ferroloop"
    touch "$ROOT/.ferroloop-tree-ok"
}

# Copy what pip and DNS need from the host into the tree (refreshed every run:
# the host's settings are the truth).
sync_host_files() {
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    [ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/pip.conf"
    if [ -n "${PIP_CERT:-}" ] && [ -f "$PIP_CERT" ]; then
        mkdir -p "$ROOT$(dirname "$PIP_CERT")"
        cp -L "$PIP_CERT" "$ROOT$PIP_CERT.host"
        mv -f "$ROOT$PIP_CERT.host" "$ROOT$PIP_CERT"
    fi
}

# in_tree VER CMD...: run CMD inside the tree, with the project at the same
# path as on the host, in a private mount namespace.
in_tree() {
    local ver="$1"; shift
    [ -f "$ROOT/.ferroloop-tree-ok" ] || cmd_tree
    [ -x "$ROOT/usr/bin/python$ver" ] || die "python$ver is not in the tree"
    sync_host_files
    local cargo_home="${CARGO_HOME:-$HOME/.cargo}" rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
    local venv="$MATRIX/venv-$ver"
    local script
    # The mounts live only in this namespace: they disappear when it exits.
    script=$(cat <<EOF
set -e
mkdir -p "$ROOT/proc" "$ROOT/dev" "$ROOT/tmp"
mount -t proc proc "$ROOT/proc"
mount --rbind /dev "$ROOT/dev"
# /tmp first: a project or toolchain that lives under /tmp goes on top of it.
mount -t tmpfs -o size=8g tmpfs "$ROOT/tmp"
mkdir -p "$ROOT$PROJ" "$ROOT$cargo_home" "$ROOT$rustup_home"
mount --bind "$PROJ" "$ROOT$PROJ"
mount --bind "$cargo_home" "$ROOT$cargo_home"
mount --bind "$rustup_home" "$ROOT$rustup_home"
exec chroot "$ROOT" /usr/bin/env -i \
    HOME="$HOME" TERM="${TERM:-dumb}" LANG=C.UTF-8 \
    PATH="$venv/bin:$cargo_home/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    CARGO_HOME="$cargo_home" RUSTUP_HOME="$rustup_home" \
    CARGO_TARGET_DIR="$MATRIX/target-$ver" \
    VIRTUAL_ENV="$venv" PIP_CERT="${PIP_CERT:-}" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT="${PIP_DEFAULT_TIMEOUT:-180}" \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    FERROLOOP_MATRIX_VERSION="$ver" \
    /bin/sh -c 'cd "\$0" && exec "\$@"' "$PROJ" "\$@"
EOF
)
    unshare --mount --propagation private /bin/bash -c "$script" in_tree "$@"
}

cmd_build() {
    local ver="$1"
    local venv="$MATRIX/venv-$ver"
    if [ ! -x "$venv/bin/python" ]; then
        in_tree "$ver" "python$ver" -m venv "$venv"
    fi
    local stamp="$venv/.deps-installed"
    if [ ! -f "$stamp" ] || [ "$PROJ/requirements-dev.txt" -nt "$stamp" ]; then
        in_tree "$ver" python -m pip install -q --upgrade pip
        # The build and test tools must install; the peers and applications
        # (uvloop, rloop, aiohttp, ...) may not install on the newest Python:
        # wheels first, a source build (gcc and the headers are in the tree)
        # when there is none; each one that still fails is reported, and the
        # tests and benchmarks that need it skip with that reason.
        in_tree "$ver" python -m pip install -q maturin pytest
        in_tree "$ver" /bin/sh -c '
            grep -vE "^\s*(#|$)" requirements-dev.txt | grep -vE "^(maturin|pytest)([<>=!~ ;]|$)" |
            while read -r req; do
                python -m pip install -q --prefer-binary "$req" >/dev/null 2>&1 ||
                    echo "matrix: $req does not install on $FERROLOOP_MATRIX_VERSION; what needs it skips" >&2
            done'
        touch "$stamp"
    fi
    in_tree "$ver" maturin develop --release -q
}

cmd_test() {
    local ver="$1"; shift
    cmd_build "$ver"
    local rc=0 logs="$MATRIX/logs"
    mkdir -p "$logs"
    in_tree "$ver" python tests/cpython/run.py "$@" 2>&1 | tee "$logs/conformance-$ver.txt" ||
        rc=1
    in_tree "$ver" python -m pytest tests -p no:cacheprovider 2>&1 | tee "$logs/pytest-$ver.txt" ||
        rc=1
    return $rc
}

# One line per version: that version's test_asyncio totals and pytest's summary.
cmd_summary() {
    local logs="$MATRIX/logs" ver conf py
    printf '%-8s %-34s %s\n' python "test_asyncio (conformance)" pytest
    for ver in "$@"; do
        conf=$(tail -n 1 "$logs/conformance-$ver.txt" 2>/dev/null || echo "not run")
        py=$(grep -E '^=*.* (passed|failed|error).* in [0-9.]+s' "$logs/pytest-$ver.txt" 2>/dev/null |
             tail -n 1 | tr -d '=' | sed 's/^ *//' || true)
        printf '%-8s %-34s %s\n' "$ver" "$conf" "${py:-not run}"
    done
}

cmd_bench() {
    local ver="$1"; shift
    cmd_build "$ver"
    in_tree "$ver" python benchmarks/run.py "$@"
}

sub="${1:-}"; shift || true
case "$sub" in
    tree) cmd_tree ;;
    run) [ $# -ge 2 ] || die "usage: run VER CMD..."; in_tree "$@" ;;
    build) [ $# -eq 1 ] || die "usage: build VER"; cmd_build "$1" ;;
    test) [ $# -ge 1 ] || die "usage: test VER [run.py args]"; cmd_test "$@" ;;
    summary) [ $# -gt 0 ] || set -- $VERSIONS; cmd_summary "$@" ;;
    bench) [ $# -ge 1 ] || die "usage: bench VER [run.py args]"; cmd_bench "$@" ;;
    shell) [ $# -eq 1 ] || die "usage: shell VER"; in_tree "$1" /bin/bash ;;
    *) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 2 ;;
esac
