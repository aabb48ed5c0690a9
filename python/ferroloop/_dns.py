"""Name resolution: getaddrinfo/getnameinfo in the default executor.

The C resolver blocks, so, as the stock loop does, names are resolved in the
default executor's threads.  Addresses that are already numeric are turned
into address info on the spot, without a thread hop (_ensure_resolved).
"""

import socket

from asyncio import base_events
from asyncio.log import logger


class DnsMixin:

    def _getaddrinfo_debug(self, host, port, family, type, proto, flags):
        # Debug mode: log every lookup, and at INFO level when it was slow.
        msg = [f"{host}:{port!r}"]
        if family:
            msg.append(f'family={family!r}')
        if type:
            msg.append(f'type={type!r}')
        if proto:
            msg.append(f'proto={proto!r}')
        if flags:
            msg.append(f'flags={flags!r}')
        msg = ', '.join(msg)
        logger.debug('Get address info %s', msg)

        t0 = self.time()
        addrinfo = socket.getaddrinfo(host, port, family, type, proto, flags)
        dt = self.time() - t0

        msg = f'Getting address info {msg} took {dt * 1e3:.3f}ms: {addrinfo!r}'
        if dt >= self.slow_callback_duration:
            logger.info(msg)
        else:
            logger.debug(msg)
        return addrinfo

    async def getaddrinfo(self, host, port, *,
                          family=0, type=0, proto=0, flags=0):
        if self._debug:
            resolve = self._getaddrinfo_debug
        else:
            resolve = socket.getaddrinfo
        return await self.run_in_executor(
            None, resolve, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr, flags=0):
        return await self.run_in_executor(
            None, socket.getnameinfo, sockaddr, flags)

    async def _ensure_resolved(self, address, *,
                               family=0, type=socket.SOCK_STREAM,
                               proto=0, flags=0, loop=None):
        """Return address info for address, resolving host names only.

        address is (host, port) or, for IPv6, (host, port, flowinfo, scope_id).
        `loop` is accepted for compatibility with the stock loop's signature
        (the resolution then goes through that loop's getaddrinfo).
        """
        if loop is None:
            loop = self
        host, port = address[:2]
        # The stdlib's own check for "already numeric" keeps the accepted
        # forms (ports as strings, IPv6 flowinfo/scope id, zone indexes
        # left to getaddrinfo) identical to the stock loop's.
        info = base_events._ipaddr_info(host, port, family, type, proto,
                                        *address[2:])
        if info is not None:
            return [info]
        return await loop.getaddrinfo(host, port, family=family, type=type,
                                      proto=proto, flags=flags)
