"""Loop APIs whose native implementation has not landed yet.

Each raises NotImplementedError naming the missing feature, so that code
reaching them fails loudly and says why.  The mixin sits after the native
LoopCore in Loop's bases: once LoopCore implements one of these methods, the
native method wins without any change here.
"""

# method name -> the feature that will provide it
PLANNED = {
    'start_tls': 'TLS',
}


def tls_not_built_yet(method):
    """The error for a real ssl= argument to `method`.

    The argument checks that do not need TLS (and their ValueErrors) run
    first, as in the stock loop; only a call that would start a handshake
    gets this.
    """
    return NotImplementedError(
        f"ferroloop does not implement {method}() with ssl= yet "
        f"(TLS: planned)")


def _not_implemented_yet(name, feature):
    # Coroutine functions, like the real methods: the error surfaces where
    # the call is awaited.
    async def method(self, *args, **kwargs):
        raise NotImplementedError(
            f"ferroloop does not implement {name} yet ({feature}: planned)")
    method.__name__ = name
    method.__qualname__ = f'PlannedMixin.{name}'
    method.__doc__ = f'Not implemented yet ({feature}: planned).'
    return method


class PlannedMixin:
    pass


for _name, _feature in PLANNED.items():
    setattr(PlannedMixin, _name, _not_implemented_yet(_name, _feature))
del _name, _feature
