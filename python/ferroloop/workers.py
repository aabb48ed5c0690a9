"""A Gunicorn worker running uvicorn on ferroloop's event loop.

    gunicorn app:app -k ferroloop.workers.UvicornWorker

It is the ``uvicorn-worker`` package's worker (``pip install
uvicorn-worker``; uvicorn's own ``uvicorn.workers`` is deprecated in its
favour) with uvicorn's ``loop`` setting pointed at ``ferroloop:new_event_loop``,
as ``uvicorn --loop ferroloop:new_event_loop`` does (uvicorn 0.36 or newer:
a ``module:callable`` loop is a loop factory there).  Importing this module
imports uvicorn-worker, uvicorn and gunicorn; ferroloop itself needs none
of them.
"""

try:
    from uvicorn_worker import UvicornWorker as _UvicornWorker
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "ferroloop.workers needs the uvicorn-worker package "
        "(pip install uvicorn-worker)") from exc

__all__ = ['UvicornWorker']


class UvicornWorker(_UvicornWorker):
    """uvicorn-worker's UvicornWorker on ferroloop's loop."""

    CONFIG_KWARGS = {**_UvicornWorker.CONFIG_KWARGS,
                     'loop': 'ferroloop:new_event_loop'}
