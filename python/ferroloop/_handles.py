"""What the native handles report as their class, where asyncio needs more.

From 3.13 on, ``call_soon_threadsafe`` returns an
``asyncio.events._ThreadSafeHandle``, whose cancel()/cancelled() wait for a
callback running in the loop thread (the native Handle does the locking; see
``thread_lock`` in src/handles.rs).  A native class cannot derive from
asyncio's Handle (its ``__slots__`` clash with the native layout), so those
handles answer ``__class__`` with this subclass, which isinstance() falls
back to; ``type(handle)`` stays native.  None where asyncio lacks the class.
"""

from asyncio import events

_Base = getattr(events, '_ThreadSafeHandle', None)

if _Base is not None:
    class ThreadSafeHandleView(_Base):
        __slots__ = ()

    ThreadSafeHandleView.__name__ = 'Handle'
    ThreadSafeHandleView.__qualname__ = 'Handle'
else:
    ThreadSafeHandleView = None
