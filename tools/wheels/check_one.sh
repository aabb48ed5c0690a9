#!/usr/bin/env bash
# Install one built artifact into a fresh virtualenv and test it there:
#
#   tools/wheels/check_one.sh PYTHON ARTIFACT suite|smoke
#
# PYTHON makes the virtualenv (in a temporary directory outside the source
# tree). ARTIFACT is a wheel or the sdist from dist/ (pip builds an sdist with
# maturin from PyPI and cargo). "suite" also installs pytest and the test
# dependencies of requirements-dev.txt (each one that has no wheel for this
# Python is skipped; the tests that need it skip), copies tests/ next to the
# venv so that the source python/ is not importable, and runs pytest there.
# Run on the host, or inside the matrix tree by tools/wheels/check.sh.
set -euo pipefail

PY="$1"; ARTIFACT="$2"; MODE="$3"
PROJ="$(cd "$(dirname "$0")/../.." && pwd)"
ARTIFACT="$(cd "$(dirname "$ARTIFACT")" && pwd)/$(basename "$ARTIFACT")"
say() { echo "check: $*" >&2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ferroloop-wheel-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
unset PYTHONPATH PYTHONHOME PYTHONSAFEPATH
export PIP_DISABLE_PIP_VERSION_CHECK=1

"$PY" -m venv "$work/venv"
VPY="$work/venv/bin/python"
say "$("$VPY" -c 'import sys; print(sys.version.split()[0])') venv in $work; installing $(basename "$ARTIFACT")"
case "$ARTIFACT" in
    # Always a real build from source: no wheel that pip cached from an earlier run.
    *.tar.gz) "$VPY" -m pip install --no-cache-dir -v "$ARTIFACT" |
                  grep -E 'Collecting maturin|Using cached maturin|Downloading maturin|Finished|Successfully' ;;
    *) "$VPY" -m pip install -q "$ARTIFACT" ;;
esac

cd "$work"
# Installed, from site-packages, and it runs a loop.
"$VPY" - <<'EOF'
import asyncio, os, sysconfig
import ferroloop, ferroloop._ferroloop as ext
site = os.path.realpath(sysconfig.get_paths()["platlib"])
for mod in (ferroloop, ext):
    path = os.path.realpath(mod.__file__)
    assert path.startswith(site + os.sep), f"{mod.__name__} from {path}, not from {site}"
async def main():
    await asyncio.sleep(0.01)
    return asyncio.get_running_loop().__class__.__module__
mod = ferroloop.run(main())
assert mod.startswith("ferroloop"), mod
print(f"check: import + ferroloop.run ok: {ferroloop.__file__}")
EOF

[ "$MODE" = smoke ] && exit 0

"$VPY" -m pip install -q "pytest>=8"
# Only maturin and pytest itself are left out (pytest-asyncio and the other
# plugins are test dependencies); wheels first, a source build where a
# package has none (forbiddenfruit, which blockbuster needs).
grep -vE '^\s*(#|$)' "$PROJ/requirements-dev.txt" | grep -vE '^(maturin|pytest)([<>=!~ ;]|$)' |
    while read -r req; do
        "$VPY" -m pip install -q --prefer-binary "$req" >/dev/null 2>&1 ||
            say "$req: does not install on this Python; the tests that need it skip"
    done
cp -r "$PROJ/tests" "$work/tests"
# The recipe tests check that the README still shows what they run.
cp "$PROJ/README.md" "$work/README.md"
find "$work/tests" -name __pycache__ -prune -exec rm -rf {} +
# pytest prepends the rootdir ($work) and tests/ to sys.path: neither holds ferroloop.
# Left out: the tests of the repository's own tools (benchmark scripts, the demo,
# the real-client servers of benchmarks/), which the wheel does not ship; they
# run in `make test`, `make test-matrix` and `make test-clients`.
"$VPY" -m pytest tests -q -rfEs -p no:cacheprovider -o addopts= \
    -W "ignore::pytest.PytestConfigWarning" \
    --ignore=tests/test_bench_report.py --ignore=tests/test_demo.py \
    --ignore=tests/test_real_clients.py
