#!/usr/bin/env bash
# Build the release artifacts into dist/: one manylinux wheel per CPython
# version (cp311 ... cp315) and an sdist, then audit and inspect them.
#
#   tools/wheels/build.sh            (make wheels)
#
# Every wheel is built on this host with `maturin build --zig`: zig links
# against glibc 2.17, so the wheels are manylinux2014 (manylinux_2_17) whatever
# the host's glibc. A version whose interpreter is not on the host is built from
# maturin's bundled sysconfig for it (no interpreter needed); tools/wheels/check.sh
# then installs and tests each wheel on the real interpreters that exist here.
#
# The tools (maturin, ziglang, auditwheel) live in their own virtualenv,
# build/wheel-tools (git-ignored), made with $PYTHON (3.11+).
#
# Environment: WHEEL_VERSIONS (default "3.11 3.12 3.13 3.14 3.15"),
#              MANYLINUX (default 2014), PYTHON (default python3).
set -euo pipefail

PROJ="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$PROJ"
VERSIONS="${WHEEL_VERSIONS:-3.11 3.12 3.13 3.14 3.15}"
MANYLINUX="${MANYLINUX:-2014}"
PYTHON="${PYTHON:-python3}"
TOOLS="$PROJ/build/wheel-tools"
DIST="$PROJ/dist"

say() { echo "wheels: $*" >&2; }
die() { say "$*"; exit 1; }

# The release profile must unwind: a panic becomes a Python exception.
if grep -Eq '^\s*panic\s*=\s*"abort"' Cargo.toml; then
    die 'Cargo.toml sets panic = "abort"; the extension must unwind'
fi

# Tools venv, reinstalled when this script's pins change.
# Pinned: the bundled sysconfig of 3.15 and zig's CLI are what this was checked with.
PINS='maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2'
if [ ! -x "$TOOLS/bin/python" ] || [ "$(cat "$TOOLS/.pins" 2>/dev/null)" != "$PINS" ]; then
    say "tools virtualenv $TOOLS ($PINS)"
    rm -rf "$TOOLS"
    "$PYTHON" -m venv "$TOOLS"
    # shellcheck disable=SC2086
    "$TOOLS/bin/python" -m pip install -q $PINS
    echo "$PINS" >"$TOOLS/.pins"
fi
export PATH="$TOOLS/bin:$PATH"
say "$(maturin --version), zig $(python -m ziglang version), auditwheel $(auditwheel --version | head -1 | awk '{print $2}')"

mkdir -p "$DIST"
rm -f "$DIST"/ferroloop-*.whl "$DIST"/ferroloop-*.tar.gz

interp=()
for v in $VERSIONS; do interp+=(-i "python$v"); done
say "building wheels for $VERSIONS (manylinux$MANYLINUX, zig)"
maturin build --release --zig --compatibility "manylinux$MANYLINUX" \
    "${interp[@]}" --out "$DIST"
say "building the sdist"
maturin sdist --out "$DIST"

# Audit: each wheel's symbols must fit the policy its tag claims.
rc=0
for w in "$DIST"/ferroloop-*.whl; do
    out=$(auditwheel show "$w" 2>&1) || { echo "$out" >&2; rc=1; continue; }
    # (auditwheel wraps its lines: join them first)
    tag=$(echo "$out" | tr -s ' \n' '  ' |
        sed -n 's/.*consistent with the following platform tag: "\([^"]*\)".*/\1/p')
    # manylinux2014 is manylinux_2_17; a wheel may only claim what audits clean.
    case "$MANYLINUX" in
        2014) want=manylinux_2_17_x86_64 ;;
        *) want="manylinux_${MANYLINUX}_x86_64" ;;
    esac
    if [ "$tag" = "$want" ]; then
        say "audit ok: $(basename "$w") -> $tag"
    else
        say "audit FAILED: $(basename "$w") -> '${tag:-?}', wanted $want"
        echo "$out" >&2
        rc=1
    fi
done

python "$PROJ/tools/wheels/inspect_dist.py" "$DIST" $VERSIONS || rc=1
[ $rc = 0 ] || die "dist/ did not pass the audit or the content checks"
say "dist/:"
ls -l "$DIST" >&2
