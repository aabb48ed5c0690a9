"""A static check for a wheel that no interpreter here can run (3.12):

    abi_symbols.py WHEEL LIBPYTHON...

Lists the Python C-API symbols the wheel's extension imports and, for each
given libpython (the neighbouring versions that are here, e.g. 3.11 and 3.13),
which of them that library does not export. A wheel built for 3.12 should
import only symbols 3.13 still exports, and from 3.11's set lack only APIs
that 3.12 added (e.g. PyErr_GetRaisedException). Prints one line per library;
exits 1 if readelf/nm fail or the wheel has no extension.
"""

import pathlib
import subprocess
import sys
import tempfile
import zipfile


def dynsyms(path, undefined):
    flag = "--undefined-only" if undefined else "--defined-only"
    out = subprocess.run(["nm", "-D", flag, str(path)], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.split()}


def main():
    wheel, libs = sys.argv[1], sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(wheel) as z:
        exts = [n for n in z.namelist() if n.endswith(".so")]
        if len(exts) != 1:
            print(f"abi: {len(exts)} extension modules in {wheel}")
            return 1
        so = pathlib.Path(z.extract(exts[0], tmp))
        need = {s for s in dynsyms(so, True) if s.startswith(("Py", "_Py"))}
    print(f"abi: {pathlib.Path(exts[0]).name} imports {len(need)} Python C-API symbols")
    for lib in libs:
        missing = sorted(need - dynsyms(lib, False))
        print(f"abi:   not exported by {pathlib.Path(lib).name}: "
              f"{', '.join(missing) if missing else 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
