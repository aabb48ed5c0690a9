"""The event loops under comparison, in the order they run within a round."""

import importlib

LOOP_NAMES = ("asyncio", "uvloop", "rloop", "ferroloop")


def new_loop(name):
    """Import the named implementation and return a fresh event loop from it."""
    if name not in LOOP_NAMES:
        raise ValueError(f"unknown loop {name!r}; choose from {', '.join(LOOP_NAMES)}")
    module = importlib.import_module(name)
    return module.new_event_loop()


def version(name):
    if name == "asyncio":
        import sys
        return "CPython " + sys.version.split()[0]
    try:
        from importlib.metadata import version as dist_version
        return dist_version(name)
    except Exception:
        module = importlib.import_module(name)
        return str(getattr(module, "__version__", "unknown"))
