"""Per-module hooks: make CPython's test_asyncio tests build the loop under test.

Setting the event loop policy (done by _child.py for every module) covers
every test that gets its loop from asyncio.new_event_loop(), asyncio.run(),
asyncio.Runner() or unittest.IsolatedAsyncioTestCase. The hooks here cover
the test classes that construct a loop class *directly*.

Deliberately NOT hooked: test_utils.TestCase.new_test_loop(), which builds a
TestLoop (asyncio's own BaseEventLoop with a fake clock) for tests of
Future/Task internals; those test asyncio's Python loop, not ours.

Each hook receives (module, lut) where lut.new_loop() returns a fresh loop
under test (ferroloop, or a stock SelectorEventLoop for --loop asyncio).
To hook a new module: add a function and register it in HOOKS.
"""

import sys

from test.test_asyncio import utils as test_utils


def _replace_per_selector_classes(module, bases, new_name, lut):
    """Drop the per-selector copies of a test mixin (SelectEventLoopTests,
    EPollEventLoopTests, PollEventLoopTests, KqueueEventLoopTests,
    ProactorEventLoopTests) and add one class running it on the loop under
    test."""
    dropped = []
    for name in ("SelectEventLoopTests", "EPollEventLoopTests",
                 "PollEventLoopTests", "KqueueEventLoopTests",
                 "ProactorEventLoopTests"):
        if hasattr(module, name):
            delattr(module, name)
            dropped.append(name)
    if "SelectEventLoopTests" not in dropped:
        # CPython layout changed: fail loudly rather than silently running
        # the stock loop.
        raise RuntimeError(f"{module.__name__}: SelectEventLoopTests not found;"
                           " update tests/cpython/hooks.py")

    def create_event_loop(self):
        return lut.new_loop()

    cls = type(new_name, bases, {
        "create_event_loop": create_event_loop,
        "__module__": module.__name__,
        "__qualname__": new_name,
    })
    setattr(module, new_name, cls)
    return cls


def hook_test_events(module, lut):
    # EventLoopTestsMixin.setUp calls self.create_event_loop(). On Unix the
    # stock classes also mix in UnixEventLoopTestsMixin, whose setUp attaches
    # a SafeChildWatcher through asyncio.set_child_watcher(): that is how the
    # *stock* Unix loop reaps subprocesses (and the policy's default
    # ThreadedChildWatcher does the same job without it), not part of the
    # loop API under test -- the Windows classes don't use it either. Child
    # watcher support of the policy is still exercised by
    # test_events.Test{Py,C}GetEventLoop.
    _replace_per_selector_classes(
        module,
        (module.EventLoopTestsMixin, module.SubprocessTestsMixin,
         test_utils.TestCase),
        "EventLoopTests", lut)


def hook_test_sock_lowlevel(module, lut):
    # BaseSockTestsMixin.setUp calls self.create_event_loop().
    _replace_per_selector_classes(
        module, (module.BaseSockTestsMixin, test_utils.TestCase),
        "EventLoopTests", lut)


def hook_test_runners(module, lut):
    # BaseTest.new_loop() builds a stock BaseEventLoop with a mocked
    # selector and installs it through a TestPolicy; BaseTest.tearDown then
    # checks the loop was closed and that shutdown_asyncgens() ran. Give it
    # the loop under test instead, instrumenting shutdown_asyncgens the same
    # way (but still running the real one).
    def new_loop(self):
        loop = lut.new_loop()
        loop.shutdown_ag_run = False
        real_shutdown_asyncgens = loop.shutdown_asyncgens

        async def shutdown_asyncgens():
            loop.shutdown_ag_run = True
            await real_shutdown_asyncgens()

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop

    module.BaseTest.new_loop = new_loop


def hook_test_pep492(module, lut):
    # BaseTest.setUp builds a stock BaseEventLoop with a mocked selector just
    # to run coroutines; run them on the loop under test.
    def setUp(self):
        test_utils.TestCase.setUp(self)
        self.loop = lut.new_loop()
        self.set_event_loop(self.loop)

    module.BaseTest.setUp = setUp


def hook_test_sendfile(module, lut):
    # SendfileBase.setUp calls self.create_event_loop(); the per-selector
    # classes are copies of SendfileTestsBase.
    _replace_per_selector_classes(
        module, (module.SendfileTestsBase, test_utils.TestCase),
        "EventLoopTests", lut)


def _hook_functional_new_loop(module, class_name, lut):
    # func_tests.FunctionalTestCaseMixin.setUp calls self.new_loop(), which
    # the Selector* class overrides with asyncio.SelectorEventLoop(). The
    # Proactor* twin is Windows-only (skipped here). The class keeps its
    # CPython name so test ids match CPython's.
    cls = getattr(module, class_name, None)
    if cls is None or "new_loop" not in vars(cls):
        raise RuntimeError(f"{module.__name__}: {class_name}.new_loop not "
                           "found; update tests/cpython/hooks.py")

    def new_loop(self):
        return lut.new_loop()

    cls.new_loop = new_loop


def hook_test_server(module, lut):
    _hook_functional_new_loop(module, "SelectorStartServerTests", lut)


def hook_test_buffered_proto(module, lut):
    _hook_functional_new_loop(module, "BufferedProtocolSelectorTests", lut)


def hook_test_sslproto(module, lut):
    # SelectorStartTLSTests (BaseStartTLS) is a FunctionalTestCaseMixin whose
    # new_loop() builds asyncio.SelectorEventLoop().
    _hook_functional_new_loop(module, "SelectorStartTLSTests", lut)
    # SslProtoHandshakeTests unit-tests sslproto.SSLProtocol with a mocked
    # transport and SSLObject. ferroloop's loop uses its own SSLProtocol
    # (asyncio's with the record path native, python/ferroloop/_tls_protocol.py),
    # so run the same tests a second time with that class in its place.
    if lut.name != "ferroloop":
        return
    base = getattr(module, "SslProtoHandshakeTests", None)
    if base is None or "ssl_protocol" not in vars(base):
        raise RuntimeError(f"{module.__name__}: SslProtoHandshakeTests."
                           "ssl_protocol not found; update tests/cpython/hooks.py")
    from unittest import mock

    from ferroloop._tls_protocol import SSLProtocol as FerroloopSSLProtocol

    def setUp(self):
        base.setUp(self)
        patcher = mock.patch.object(module.sslproto, "SSLProtocol",
                                    FerroloopSSLProtocol)
        patcher.start()
        self.addCleanup(patcher.stop)

    name = "FerroloopSslProtoHandshakeTests"
    setattr(module, name, type(name, (base,), {
        "setUp": setUp, "__module__": module.__name__, "__qualname__": name}))


def hook_test_unix_events(module, lut):
    # SelectorEventLoopSignalTests and SelectorEventLoopUnixSocketTests build
    # asyncio.SelectorEventLoop() in setUp: give them the loop under test
    # (their tests that mock asyncio.unix_events internals are excluded in
    # exclusions.py). PolicyTests.create_policy() builds a stock
    # DefaultEventLoopPolicy, whose new_event_loop() makes stock loops: use
    # the loop under test's policy (ferroloop.EventLoopPolicy subclasses
    # asyncio's Unix policy, child watcher API included).
    # Not hooked: SelectorEventLoopUnixSockSendfileTests and TestFunctional
    # (asyncio.new_event_loop(), i.e. the policy); the pipe transport and
    # child watcher tests (new_test_loop() + asyncio's own classes; excluded).
    for class_name in ("SelectorEventLoopSignalTests",
                       "SelectorEventLoopUnixSocketTests"):
        cls = getattr(module, class_name, None)
        if cls is None or "setUp" not in vars(cls):
            raise RuntimeError(f"{module.__name__}: {class_name}.setUp not "
                               "found; update tests/cpython/hooks.py")

        def setUp(self):
            test_utils.TestCase.setUp(self)
            self.loop = lut.new_loop()
            self.set_event_loop(self.loop)

        cls.setUp = setUp

    # 3.14 removed PolicyTests with the child watchers (the policy classes
    # are deprecated there): nothing to hook then.
    if not hasattr(module, "PolicyTests") and sys.version_info >= (3, 14):
        return
    if "create_policy" not in vars(module.PolicyTests):
        raise RuntimeError(f"{module.__name__}: PolicyTests.create_policy "
                           "not found; update tests/cpython/hooks.py")

    def create_policy(self):
        return lut.policy_class()

    module.PolicyTests.create_policy = create_policy


HOOKS = {
    "test_events": hook_test_events,
    "test_sock_lowlevel": hook_test_sock_lowlevel,
    "test_runners": hook_test_runners,
    "test_pep492": hook_test_pep492,
    "test_sendfile": hook_test_sendfile,
    "test_server": hook_test_server,
    "test_buffered_proto": hook_test_buffered_proto,
    "test_unix_events": hook_test_unix_events,
    "test_sslproto": hook_test_sslproto,
    # test_streams: StreamTests.setUp uses asyncio.new_event_loop() (the
    # policy). test_protocols: tests of the abstract protocol classes, no
    # loop at all. test_ssl: TestSSL.setUp and TestSSL.new_loop() use
    # asyncio.new_event_loop() (the policy).
}


def apply(name, module, lut):
    hook = HOOKS.get(name)
    if hook is not None:
        hook(module, lut)
