"""Serve an ASGI app with uvicorn in a daemon thread, for the agent's console and central's dashboard.

The socket is bound here, before uvicorn starts: a busy or forbidden address then fails in the
caller with its reason ("address already in use"), instead of inside uvicorn's thread, which logs
it and calls sys.exit() where no one can catch it.
"""

from __future__ import annotations

import socket
import threading
import time


def bind_socket(bind: str) -> socket.socket:
    """A listening TCP socket on "host:port" ([v6]:port too); OSError if it cannot be had."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    family, kind, proto, _, addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve_in_thread(app, bind: str, name: str, what: str):
    """(uvicorn.Server, thread), once it is serving; RuntimeError with the reason if it cannot."""
    import uvicorn

    try:
        sock = bind_socket(bind)
    except OSError as e:
        raise RuntimeError(f"{what} could not listen on {bind}: {e.strerror or e}") from e
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=1))
    server.install_signal_handlers = lambda: None  # the process owns its signals (older uvicorn calls this)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as e:  # SystemExit included: reported below, not lost in the thread
            failed.append(e)
        finally:
            sock.close()

    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started and t.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.should_exit = True
        reason = f": {failed[0]!r}" if failed else " within 10 s"
        raise RuntimeError(f"{what} could not start on {bind}{reason}")
    return server, t
