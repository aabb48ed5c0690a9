"""Loop APIs whose native implementation has not landed yet.

Each raises NotImplementedError naming the missing feature, so that code
reaching them fails loudly and says why.  The mixin sits after the native
LoopCore in Loop's bases: once LoopCore implements one of these methods, the
native method wins without any change here.
"""

# method name -> the feature that will provide it
PLANNED: dict = {
    # (empty: TLS, the last one, is built; see _tls)
}


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
