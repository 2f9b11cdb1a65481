"""The server: listening sockets, one task per connection, lifespan, graceful shutdown.

Task tree (``docs/architecture.md`` draws it)::

    serve()                         waits for the shutdown trigger
    └── _Server._run                CancelScope "root": shielded once listening
        ├── lifespan task           the app's lifespan call
        └── CancelScope "drain"     gets a deadline when the graceful shutdown starts
            └── connections nursery
                ├── accept loop per listener  (cancelled first at shutdown)
                └── one task per connection

Once listening, the root scope is shielded: cancelling ``serve()``'s caller
does not tear connections down mid-response but starts the same graceful
shutdown as the trigger. ``force_exit()`` cancels the root scope outright.
"""

from __future__ import annotations

import errno
import logging
import math
import random
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..asgi.interface import adapt_interface
from ..asgi.lifespan import Lifespan, LifespanFailure
from ..core.config import Config
from ..core.logs import TRACE, logger
from ..core.socket_io import close_stream
from ..http2.connection import HTTP2Connection
from ..http11.connection import HTTPConnection
from .context import ServerContext
from .listeners import Listener, open_listeners
from .tls import load_tls, tls_extension

#: accept() errors that mean "out of resources for now", not "listener broken".
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_ACCEPT_RETRY_SECONDS = 0.1
#: The most connections one wake-up of an accept loop takes from the backlog.
_ACCEPT_BURST = 256
#: How many local addresses get a tuple shared by all their connections
#: (a server has a handful; more than this are not worth remembering).
_MAX_LOCAL_ADDRESSES = 64


class Server:
    """One server: its listeners, its connections, its lifespan."""

    def __init__(self, app: Callable[..., Any], config: Config) -> None:
        self.config = config
        app = adapt_interface(app, config.interface)
        if config.limit_max_requests is not None:
            limit = config.limit_max_requests
            limit += random.randint(0, config.limit_max_requests_jitter)
            app = _RequestLimit(app, limit, self._retire)
        self.lifespan = Lifespan(app, config)
        self.ctx = ServerContext(app=app, config=config, lifespan_state=self.lifespan.state)
        # Certificates are read before anything listens: a bad path fails the start.
        self.tls = load_tls(config)
        self.scheme = "https" if self.tls is not None else "http"
        self.addresses: list[tuple[str, int | None]] = []
        self._connections: set[HTTPConnection | HTTP2Connection] = set()
        self._local_addresses: dict[tuple[str, int], tuple[str, int]] = {}
        self._shutdown_requested = trio.Event()
        self._root_scope = trio.CancelScope()
        self._startup_failure: LifespanFailure | None = None
        self._trigger_scope = trio.CancelScope()
        self._acceptors: trio.CancelScope | None = None
        #: force_exit() was called: what was in flight was cut short.
        self.forced = False
        #: The PID to name in the "Serving on" line, in a worker process.
        self.worker_pid: int | None = None

    @property
    def shutdown_requested(self) -> bool:
        return self._shutdown_requested.is_set()

    async def wait_for_shutdown_request(self) -> None:
        await self._shutdown_requested.wait()

    def request_shutdown(self) -> None:
        """Begin the graceful shutdown (safe to call more than once, from sync code)."""
        self._shutdown_requested.set()
        self._trigger_scope.cancel()
        # Stop accepting now rather than when the drain starts: under
        # --workers the sockets are shared, and a connection left in the
        # backlog goes to another worker instead of being closed here.
        if self._acceptors is not None:
            self._acceptors.cancel()

    def _retire(self) -> None:
        """The request limit is reached: drain and stop, this very response included.

        Marking the connections now, rather than when the drain starts, makes
        the response in progress say ``Connection: close``, so its client
        does not send another request on a connection about to close.
        """
        if not self.shutdown_requested:
            logger.info("Reached the request limit: shutting down gracefully")
        self.request_shutdown()
        for connection in list(self._connections):
            connection.begin_shutdown()

    def force_exit(self, why: str = "Asked to stop at once") -> None:
        """Stop now: cancel every connection and skip the lifespan shutdown.

        ``why`` begins the one line that says the shutdown was forced.
        """
        if not self.forced:
            self.forced = True
            logger.warning(
                "%s: shutdown forced, exiting now; cut short: %d open connection(s) "
                "and the application's lifespan shutdown",
                why,
                len(self._connections),
            )
        self._shutdown_requested.set()
        self._root_scope.cancel()

    async def serve(
        self,
        shutdown_trigger: Callable[[], Awaitable[object]] | None,
        task_status: trio.TaskStatus[list[tuple[str, int | None]]],
    ) -> None:
        listeners = await open_listeners(self.config)
        async with trio.open_nursery() as nursery:
            self.addresses = await nursery.start(self._run, listeners)
            if self._startup_failure is None:
                task_status.started(self.addresses)
                try:
                    # request_shutdown() cancels this scope: the server may decide
                    # to stop by itself (the request limit), not only the trigger.
                    with self._trigger_scope:
                        if shutdown_trigger is None:
                            await trio.sleep_forever()
                        else:
                            await shutdown_trigger()
                finally:
                    # Returned, raised or cancelled: in every case the shielded
                    # _run task now drains and the nursery waits for it.
                    self.request_shutdown()
        if self._startup_failure is not None:
            # Raised out here, not inside a nursery, so callers see the
            # failure itself rather than an exception group around it.
            raise self._startup_failure

    async def _run(
        self,
        listeners: list[Listener],
        task_status: trio.TaskStatus[list[tuple[str, int | None]]],
    ) -> None:
        with self._root_scope:
            try:
                async with trio.open_nursery() as system:
                    try:
                        await self.lifespan.startup(system)
                    except LifespanFailure as exc:
                        self._startup_failure = exc
                        task_status.started([])
                        return
                    await self._serve_connections(listeners, task_status)
                    await self.lifespan.shutdown()
            finally:
                for listener in listeners:
                    await listener.aclose()

    async def _serve_connections(
        self,
        listeners: list[Listener],
        task_status: trio.TaskStatus[list[tuple[str, int | None]]],
    ) -> None:
        with trio.CancelScope() as drain_scope:
            async with trio.open_nursery() as connections:
                async with trio.open_nursery() as acceptors:
                    self._acceptors = acceptors.cancel_scope
                    for listener in listeners:
                        acceptors.start_soon(self._accept_loop, listener, connections)
                    addresses = [listener.address for listener in listeners]
                    for listener in listeners:
                        logger.info(
                            "Serving on %s%s (press CTRL+C to quit)",
                            listener.url(self.scheme),
                            "" if self.worker_pid is None else f" in worker [{self.worker_pid}]",
                        )
                    # From here on, only our own shutdown decides when we stop.
                    self._root_scope.shield = True
                    task_status.started(addresses)
                    await self._shutdown_requested.wait()
                    acceptors.cancel_scope.cancel()
                for listener in listeners:
                    await listener.aclose()
                self._begin_drain(drain_scope)
        if drain_scope.cancelled_caught:
            logger.warning("graceful shutdown timed out: cancelled the remaining connections")

    def _begin_drain(self, drain_scope: trio.CancelScope) -> None:
        timeout = self.config.timeout_graceful_shutdown
        if self._connections:
            logger.info("Waiting for %d connection(s) to finish", len(self._connections))
        for connection in list(self._connections):
            connection.begin_shutdown()
        if timeout is not None and not math.isinf(timeout):
            drain_scope.deadline = trio.current_time() + timeout

    async def _accept_loop(self, listener: Listener, connections: trio.Nursery) -> None:
        """Accept connections until cancelled: each wake-up takes all that are waiting.

        ``accept()`` takes one connection and then yields: one connection per
        turn of the scheduler, whose turns get longer with every connection
        served. With a thousand clients connecting at once the last ones
        would wait seconds in the backlog (docs/performance-notes.md, round
        8), so the rest of the backlog is taken in the same step.
        """
        while True:
            try:
                stream = await listener.listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                logger.error("accept() failed: %s; retrying shortly", exc.strerror)
                await trio.sleep(_ACCEPT_RETRY_SECONDS)
                continue
            # Named with one shared string: trio would format one per task.
            connections.start_soon(
                self._handle_connection, stream, listener, name=_CONNECTION_TASK_NAME
            )
            for stream in _accept_waiting(listener.listener.socket, _ACCEPT_BURST):
                connections.start_soon(
                    self._handle_connection, stream, listener, name=_CONNECTION_TASK_NAME
                )

    async def _handle_connection(self, stream: trio.SocketStream, listener: Listener) -> None:
        # Few locals: this frame is held for as long as the connection is open.
        if self.tls is None:
            connection = self._new_connection(stream, listener)
        else:
            connection = await self._new_tls_connection(stream, listener)
            if connection is None:
                return
        self._connections.add(connection)
        self.ctx.open_connections += 1
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug:
            peer = _peer_name(connection.client, listener)
            logger.debug(
                "%s: connection open (%s, %s)", peer, _protocol(connection), connection.scheme
            )
        try:
            if self._shutdown_requested.is_set():
                connection.begin_shutdown()
            await connection.run()
            if type(connection) is HTTPConnection and connection.handover is not None:
                # The HTTP/1.1 connection found HTTP/2 (prior knowledge, or h2c).
                self._connections.discard(connection)
                connection = self._switch_to_http2(connection)
                if debug:
                    logger.debug("%s: connection switched to HTTP/2", peer)
                self._connections.add(connection)
                if self._shutdown_requested.is_set():
                    connection.begin_shutdown()
                await connection.run()
        finally:
            self._connections.discard(connection)
            self.ctx.open_connections -= 1
            if debug:
                logger.debug("%s: connection closed: %s", peer, _close_reason(connection))

    def _switch_to_http2(self, connection: HTTPConnection) -> HTTP2Connection:
        handover = connection.handover
        assert handover is not None
        return HTTP2Connection(
            connection.stream,
            self.ctx,
            client=connection.client,
            server=connection.server,
            received=handover.received,
            upgrade=handover.upgrade,
        )

    def _addresses(
        self, stream: trio.SocketStream, listener: Listener
    ) -> tuple[tuple[str, int] | None, tuple[str, int | None] | None]:
        """The client's and the server's address of a new connection.

        Shared where they repeat: every connection to one local address gets
        the same tuple, and clients from one host the same host string.
        """
        if listener.is_unix:
            return None, listener.address
        sock = stream.socket
        client = _peer(sock)
        server = _local(sock)
        if server is not None:
            known = self._local_addresses
            server = known.get(server) or server
            if len(known) < _MAX_LOCAL_ADDRESSES:
                known.setdefault(server, server)
        return client, server

    def _new_connection(self, stream: trio.SocketStream, listener: Listener) -> HTTPConnection:
        client, server = self._addresses(stream, listener)
        return HTTPConnection(stream, self.ctx, client=client, server=server)

    async def _new_tls_connection(
        self, stream: trio.SocketStream, listener: Listener
    ) -> HTTPConnection | HTTP2Connection | None:
        """The connection once the TLS handshake is done, or None if it failed.

        Its protocol is the one ALPN chose: ``h2`` is offered first.
        """
        assert self.tls is not None
        client, server = self._addresses(stream, listener)
        tls_stream = await self._tls_handshake(stream, client)
        if tls_stream is None:
            return None
        kind = HTTP2Connection if tls_stream.selected_alpn_protocol() == "h2" else HTTPConnection
        return kind(
            tls_stream,
            self.ctx,
            client=client,
            server=server,
            scheme="https",
            tls=tls_extension(self.tls, tls_stream),
        )

    async def _tls_handshake(
        self, stream: trio.SocketStream, client: tuple[str, int] | None
    ) -> trio.SSLStream[trio.SocketStream] | None:
        """The handshaken TLS stream, or None (and the socket closed) if the handshake failed.

        Runs in the connection's own task, so a slow client holds up only itself.
        """
        assert self.tls is not None
        tls_stream = trio.SSLStream(
            stream, self.tls.context, server_side=True, https_compatible=True
        )
        with trio.move_on_after(self.config.timeout_tls_handshake) as timeout:
            try:
                await tls_stream.do_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                reason = exc.__cause__ or exc
                logger.log(TRACE, "TLS handshake with %s failed: %s", client, reason)
                await close_stream(stream)
                return None
        if timeout.cancelled_caught:
            logger.log(TRACE, "TLS handshake with %s timed out", client)
            await close_stream(stream)
            return None
        return tls_stream


#: The name of every connection task (trio's default name, spelled out once).
_CONNECTION_TASK_NAME = f"{__name__}.{Server._handle_connection.__qualname__}"


class _RequestLimit:
    """Wraps the app: calls ``on_limit`` when the ``limit``-th request arrives."""

    def __init__(self, app: Callable[..., Any], limit: int, on_limit: Callable[[], None]) -> None:
        self.app = app
        self.remaining = limit
        self.on_limit = on_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            self.remaining -= 1
            if self.remaining == 0:
                self.on_limit()
        await self.app(scope, receive, send)


def _protocol(connection: HTTPConnection | HTTP2Connection) -> str:
    return "HTTP/1.1" if type(connection) is HTTPConnection else "HTTP/2"


def _close_reason(connection: HTTPConnection | HTTP2Connection) -> str:
    if type(connection) is HTTPConnection:
        return connection.close_reason
    # HTTP/2 says why in its GOAWAY, logged by the connection itself.
    return "HTTP/2 connection ended"


def _peer_name(client: tuple[str, int] | None, listener: Listener) -> str:
    """``host:port`` of a client, or the unix socket it came in on (which has no address)."""
    if client is None:
        return listener.url("unix")
    return f"{client[0]}:{client[1]}"


def _accept_waiting(listening: trio.socket.SocketType, limit: int) -> list[trio.SocketStream]:
    """The connections already waiting in the backlog (at most ``limit``), taken without waiting.

    Through a stdlib socket object over the listening descriptor, detached
    again before returning: trio's ``accept()`` would yield after each one.
    Any error ends the burst; the next ``accept()`` meets it again and
    handles it (a full descriptor table, a connection reset meanwhile).
    """
    fd = listening.fileno()
    if fd == -1:
        return []
    # Family, type and protocol given: otherwise the socket module asks the
    # kernel for them, three system calls for every burst.
    twin = socket.socket(listening.family, listening.type, listening.proto, fileno=fd)
    accepted = []
    try:
        if socket.getdefaulttimeout() is not None:
            # A default timeout set by the app must not make these accepts
            # wait; without one the descriptor stays as trio made it, non-blocking.
            twin.setblocking(False)
        while len(accepted) < limit:
            try:
                sock, _ = twin.accept()
            except OSError:
                break
            accepted.append(trio.SocketStream(trio.socket.from_stdlib_socket(sock)))
    finally:
        twin.detach()
    return accepted


def _peer(sock: trio.socket.SocketType) -> tuple[str, int] | None:
    """The remote (host, port) of a TCP connection, the host string interned."""
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return None
    # Interned, not cached: the string lives as long as a connection from the host.
    return sys.intern(host), port


def _local(sock: trio.socket.SocketType) -> tuple[str, int] | None:
    try:
        address = sock.getsockname()
    except OSError:
        return None
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return tuple(address[:2])  # type: ignore[return-value]
    return None


async def serve(
    app: Callable[..., Any],
    config: Config | None = None,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    task_status: trio.TaskStatus[list[tuple[str, int | None]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``shutdown_trigger()`` returns or the caller is cancelled.

    Either way the shutdown is graceful: stop accepting, close idle
    connections, let requests in flight finish (for at most
    ``config.timeout_graceful_shutdown`` seconds), then run the lifespan
    shutdown. With ``await nursery.start(serve, app, config)`` the caller
    gets the list of bound ``(host, port)`` addresses once the server
    listens (``(path, None)`` for a unix socket). No signal handlers are
    installed: that is the caller's business. With
    ``config.limit_max_requests`` the server also stops by itself, gracefully,
    after that many requests.
    """
    server = Server(app, config if config is not None else Config())
    await server.serve(shutdown_trigger, task_status)
