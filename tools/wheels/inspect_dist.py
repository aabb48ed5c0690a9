"""Check the contents and metadata of dist/: inspect_dist.py DIST VERSION...

For each VERSION (e.g. 3.14) there must be exactly one wheel tagged
cpXY-cpXY-manylinux..._x86_64 holding the extension built for that version,
the Python package with its .pyi stubs and py.typed, and no test files; its
metadata must carry the license expression, Requires-Python and a classifier
for every supported version. The sdist must carry what a build needs
(Cargo.lock with no git sources, both crates, python/) and the same metadata.
"""

import email.parser
import pathlib
import re
import sys
import tarfile
import zipfile

SUPPORTED = ["3.11", "3.12", "3.13", "3.14", "3.15"]
LICENSE = "MIT OR Apache-2.0"
REQUIRES_PYTHON = ">=3.11"
PACKAGE_FILES = ["ferroloop/__init__.py", "ferroloop/__init__.pyi",
                 "ferroloop/_ferroloop.pyi", "ferroloop/py.typed",
                 "ferroloop/__main__.py"]

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def check_metadata(where, text):
    msg = email.parser.Parser().parsestr(text)
    if msg.get("License-Expression") != LICENSE:
        problem(where, f"License-Expression is {msg.get('License-Expression')!r}, not {LICENSE!r}")
    if msg.get("Requires-Python") != REQUIRES_PYTHON:
        problem(where, f"Requires-Python is {msg.get('Requires-Python')!r}")
    classifiers = set(msg.get_all("Classifier") or [])
    for v in SUPPORTED:
        c = f"Programming Language :: Python :: {v}"
        if c not in classifiers:
            problem(where, f"missing classifier {c!r}")
    if any(c.startswith("License ::") for c in classifiers):
        problem(where, "License :: classifiers next to License-Expression (PEP 639 forbids)")


# The texts of both licenses of the expression travel with every artifact.
LICENSE_FILES = ("LICENSE-MIT", "LICENSE-APACHE")


def check_wheel(path, version):
    where = path.name
    xy = version.replace(".", "")
    m = re.fullmatch(r"ferroloop-[^-]+-(cp\d+)-(cp\d+)-(.+)\.whl", path.name)
    if not m:
        problem(where, "unexpected file name")
        return
    py, abi, plat = m.groups()
    if py != f"cp{xy}" or abi != f"cp{xy}":
        problem(where, f"tags {py}-{abi}, wanted cp{xy}-cp{xy}")
    if not all(p.startswith("manylinux") and p.endswith("_x86_64") for p in plat.split(".")):
        problem(where, f"platform tag {plat} is not manylinux x86_64")
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        for f in PACKAGE_FILES:
            if f not in names:
                problem(where, f"missing {f}")
        ext = [n for n in names if n.startswith("ferroloop/_ferroloop.") and n.endswith(".so")]
        if ext != [f"ferroloop/_ferroloop.cpython-{xy}-x86_64-linux-gnu.so"]:
            problem(where, f"extension module(s) {ext}, wanted the cpython-{xy} one")
        tests = [n for n in names if re.search(r"(^|/)(tests?|conftest\.py|test_[^/]*\.py)($|/)", n)]
        if tests:
            problem(where, f"test files in the wheel: {tests}")
        stray = [n for n in names if not (n.startswith("ferroloop/") or ".dist-info/" in n)]
        if stray:
            problem(where, f"files outside the package: {stray}")
        for lic in LICENSE_FILES:
            if not any(n.endswith(f".dist-info/licenses/{lic}") for n in names):
                problem(where, f"license text {lic} missing")
        meta = [n for n in names if n.endswith(".dist-info/METADATA")]
        if len(meta) != 1:
            problem(where, "no METADATA")
        else:
            check_metadata(where, z.read(meta[0]).decode())
    print(f"inspect: {where}: {len(names)} files, {path.stat().st_size // 1024} KiB")


def check_sdist(path):
    where = path.name
    with tarfile.open(path) as t:
        names = t.getnames()
        top = names[0].split("/")[0]
        need = ["pyproject.toml", "Cargo.toml", "Cargo.lock", "build.rs", "src/lib.rs",
                "crates/engine/Cargo.toml", "crates/engine/src/lib.rs",
                "python/ferroloop/__init__.py", "python/ferroloop/_ferroloop.pyi",
                "python/ferroloop/py.typed", "PKG-INFO", *LICENSE_FILES]
        for f in need:
            if f"{top}/{f}" not in names:
                problem(where, f"missing {f}")
        lock = t.extractfile(f"{top}/Cargo.lock")
        if lock is not None:
            sources = set(re.findall(r'^source = "([^+]+)\+', lock.read().decode(), re.M))
            if sources - {"registry"}:
                problem(where, f"Cargo.lock has non-registry sources {sources}: a build would need them")
        pkg = t.extractfile(f"{top}/PKG-INFO")
        if pkg is not None:
            check_metadata(where, pkg.read().decode())
    print(f"inspect: {where}: {len(names)} files, {path.stat().st_size // 1024} KiB")


def main():
    dist = pathlib.Path(sys.argv[1])
    versions = sys.argv[2:] or SUPPORTED
    for v in versions:
        xy = v.replace(".", "")
        wheels = sorted(dist.glob(f"ferroloop-*-cp{xy}-cp{xy}-*.whl"))
        if len(wheels) != 1:
            problem(str(dist), f"{len(wheels)} wheels for {v}, wanted 1")
        for w in wheels:
            check_wheel(w, v)
    sdists = sorted(dist.glob("ferroloop-*.tar.gz"))
    if len(sdists) != 1:
        problem(str(dist), f"{len(sdists)} sdists, wanted 1")
    for s in sdists:
        check_sdist(s)
    for p in problems:
        print(f"inspect: PROBLEM {p}", file=sys.stderr)
    print(f"inspect: {'FAILED' if problems else 'ok'}"
          f" ({len(problems)} problem{'s' if len(problems) != 1 else ''})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
