"""python -m ferroloop: run a program with ferroloop as asyncio's loop.

    python -m ferroloop script.py [args...]
    python -m ferroloop -m module [args...]

The program runs as __main__ with sys.argv as if Python had started it
directly; ferroloop's policy is installed first, so asyncio.run(),
asyncio.new_event_loop() and get_event_loop() create ferroloop loops.  On
Python 3.14+, where policies are deprecated, it is installed the way
asyncio's own internals read it: without a DeprecationWarning.
"""

import os
import runpy
import sys
import zipfile

import ferroloop
from ferroloop import _policy

USAGE = """\
usage: python -m ferroloop script.py [args...]
       python -m ferroloop -m module [args...]

Run a Python program with ferroloop installed as asyncio's event loop policy.
"""


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ('-h', '--help'):
        stream = sys.stdout if args else sys.stderr
        stream.write(USAGE)
        return 0 if args else 2
    if args[0] in ('-V', '--version'):
        print(f'ferroloop {ferroloop.__version__}')
        return 0

    # Not ferroloop.install(): choosing the loop this way is the user's
    # request, so no deprecation warning on 3.14+ (asyncio.run() itself
    # reads the policy through the same non-warning route).
    _policy.set_policy_quietly(_policy.EventLoopPolicy())

    if args[0] == '-m':
        if len(args) < 2:
            sys.stderr.write('python -m ferroloop: -m needs a module name\n\n'
                             + USAGE)
            return 2
        module = args[1]
        # As with `python -m module`: argv[0] becomes the module's file
        # (runpy sets it) and sys.path[0] stays the current directory.
        sys.argv = [module] + args[2:]
        runpy.run_module(module, run_name='__main__', alter_sys=True)
        return 0

    script = args[0]
    if not os.path.exists(script):
        sys.stderr.write(f"python -m ferroloop: can't open file "
                         f"{os.path.abspath(script)!r}: "
                         f"[Errno 2] No such file or directory\n")
        return 2
    sys.argv = args
    if os.path.isfile(script) and not zipfile.is_zipfile(script):
        # As with `python script.py`: the script's directory is
        # sys.path[0], in place of the current directory that
        # `-m ferroloop` put there.  (For a directory or zip file, runpy
        # puts it on sys.path itself.)
        sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name='__main__')
    return 0


if __name__ == '__main__':
    sys.exit(main())
