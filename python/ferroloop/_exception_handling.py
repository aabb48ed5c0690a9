"""The loop's exception handler: errors nobody awaited end up here.

The native core calls call_exception_handler() when a callback raises, with
the same context dict as asyncio's Handle._run builds.
"""

import asyncio
import traceback

from asyncio.log import logger


# 3.12 gave handles (and tasks) get_context() and, with it, made a custom
# exception handler run in the context of the task/future/handle the error
# is about.  Follow whichever the running asyncio does.
_HANDLER_IN_OBJECT_CONTEXT = hasattr(asyncio.Handle, 'get_context')


def _context_of(context):
    """The contextvars.Context the error's task/future/handle runs in."""
    # A Task may sit under 'future'; plain Futures have no get_context.
    for key in ('task', 'future', 'handle'):
        thing = context.get(key)
        if thing is not None:
            break
    else:
        return None
    get_context = getattr(thing, 'get_context', None)
    if get_context is None:
        return None
    ctx = get_context()
    return ctx if hasattr(ctx, 'run') else None


class ExceptionHandlingMixin:
    _exception_handler = None

    def get_exception_handler(self):
        """Return the exception handler, or None if the default one is in use."""
        return self._exception_handler

    def set_exception_handler(self, handler):
        """Set handler(loop, context) as the exception handler; None resets it."""
        if handler is not None and not callable(handler):
            raise TypeError(f'A callable object or None is expected, '
                            f'got {handler!r}')
        self._exception_handler = handler

    def default_exception_handler(self, context):
        """Log the error message and the rest of the context.

        In debug mode the log also shows where the object involved (handle,
        future, task) was created.
        """
        message = context.get('message')
        if not message:
            message = 'Unhandled exception in event loop'

        exception = context.get('exception')
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        else:
            exc_info = False

        current_handle = getattr(self, '_current_handle', None)
        if ('source_traceback' not in context and
                current_handle is not None and
                current_handle._source_traceback):
            context['handle_traceback'] = current_handle._source_traceback

        log_lines = [message]
        for key in sorted(context):
            if key in {'message', 'exception'}:
                continue
            value = context[key]
            if key == 'source_traceback':
                value = ('Object created at (most recent call last):\n' +
                         ''.join(traceback.format_list(value)).rstrip())
            elif key == 'handle_traceback':
                value = ('Handle created at (most recent call last):\n' +
                         ''.join(traceback.format_list(value)).rstrip())
            else:
                value = repr(value)
            log_lines.append(f'{key}: {value}')

        logger.error('\n'.join(log_lines), exc_info=exc_info)

    def call_exception_handler(self, context):
        """Pass context to the exception handler in use.

        context keys: 'message', and optionally 'exception', 'future',
        'task', 'handle', 'protocol', 'transport', 'socket', 'asyncgen'.
        A failing handler is reported, never propagated (except SystemExit
        and KeyboardInterrupt): this runs from the loop's own machinery.
        """
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                # A subclass may override default_exception_handler.
                logger.error('Exception in default exception handler',
                             exc_info=True)
            return

        try:
            ctx = _context_of(context) if _HANDLER_IN_OBJECT_CONTEXT else None
            if ctx is not None:
                ctx.run(self._exception_handler, self, context)
            else:
                self._exception_handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    'message': 'Unhandled error in exception handler',
                    'exception': exc,
                    'context': context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error('Exception in default exception handler '
                             'while handling an unexpected error '
                             'in custom exception handler',
                             exc_info=True)
