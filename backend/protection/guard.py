"""Protection at the HTTP layer: what Waitress must refuse before a request reaches Flask.

Flask only sees complete requests, so everything that costs the server while a request is still
arriving or waiting for a thread is decided here, in Waitress's event-loop thread:

* **Auth before the body.** With API keys on, a request to a protected path is answered 401 as soon
  as its headers are parsed; its body is never read, buffered or spooled to a temp file.
* **Slow clients.** A request must arrive completely within ``read_timeout`` of its first byte (a
  sender trickling one byte every few seconds is cut off with a 408), idle keep-alive connections
  close after ``idle_timeout``.
* **Load shedding.** When more than ``max_queue`` requests already wait for a worker thread, a new
  one is answered at once with 503 + ``Retry-After`` instead of queueing without bound. Probes are
  never shed, so an overloaded pod is not killed by its liveness probe. (Scrapes do not come here:
  /metrics has its own port, ``backend.runtime.metrics_server``.)
* **Probes never wait for a thread.** When every worker thread is busy, a probe is answered from the
  event-loop thread instead of queueing behind requests that may each take a second of CPU (a batch
  of 16-megapixel uploads): a probe that times out would take the pod out of the Service, or restart
  it, for being busy. With a thread free, probes go to the workers like any request.
* **Bodies admitted from the headers.** A ``Content-Length`` over ``VISION_MAX_BODY_BYTES`` is a 413
  before any of the body is read; a body that will be spooled to a temp file reserves its bytes from
  the spool budget first (``backend.protection.admission``), else 503. Chunked bodies are held to the same
  limits as they grow, and to an average chunk size: Waitress decodes chunks in Python, so a body
  of 1-byte chunks would cost seconds of CPU in the event loop.
* **Explanations** are admitted against their own budget here, so a flood of them is answered 503
  from the event loop without taking a worker thread or buffering their bodies.
* **JSON errors.** Waitress's own rejections (bad request line or headers, 413 over its body limit,
  431, 501) get the API's JSON error shape and, like every answer, an access-log line and metrics.

What is decided (auth, probe paths, the code of each answer) and what is recorded (the access-log
line, the metrics) is the request policy the Flask app applies too (``backend.protection.policy``);
the guard refuses with :class:`~backend.errors.ApiError` too, its status from its code.
"""

from __future__ import annotations

import json
import time
import weakref
from http import HTTPStatus
from typing import TYPE_CHECKING

from waitress.buffers import OverflowableBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import ErrorTask
from waitress.utilities import Error

from backend.contract import BODY_TOO_LARGE, INVALID_REQUEST, OVERLOADED, PROBE_PATHS, REQUEST_TIMEOUT
from backend.errors import ApiError
from backend.logs import REQUEST_ID_HEADER, request_id
from backend.protection import policy
from backend.protection.auth import presented_key

if TYPE_CHECKING:  # the guard is handed the state; it imports nothing of the Flask side
    from backend.web.state import State

# Never shed: kubelet probes must get through an overload (they are tiny).
UNSHEDDABLE = PROBE_PATHS

EXPLAIN_RULE = "/v1/models/<name>/explain"

# Chunked bodies: Waitress decodes each chunk with a few Python operations (and copies the rest of
# the read buffer each time), so the number of chunks, not bytes, is what costs CPU. Real clients
# send chunks of kilobytes; a body may have MIN_CHUNK bytes per chunk on average, after FREE_CHUNKS.
FREE_CHUNKS, MIN_CHUNK = 64, 256
MAX_CONTROL_LINE, MAX_TRAILER = 1024, 16384  # Waitress accumulates these without a bound
SPOOL_STEP = 2**20  # a chunked body reserves spool space in steps of this many bytes


class Refusal(Error):
    """An :class:`ApiError` answered by Waitress: its status (from its code), message and headers."""

    def __init__(self, error: ApiError):
        super().__init__(error.message)
        self.code, self.reason = error.status, _reason(error.status)
        self.error_code, self.shed = error.code, error.shed
        self.headers = tuple(error.headers.items())


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # 499, nginx's "client closed request", is in no standard
        return "Client Closed Request"


def overloaded(message: str, retry_after: str = "1") -> Refusal:
    return Refusal(ApiError(message, code=OVERLOADED, headers={"Retry-After": retry_after}, shed="overloaded"))


def _header(request: HTTPRequestParser, name: str) -> str:
    return request.headers.get(name.upper().replace("-", "_"), "")


def _path(request: HTTPRequestParser) -> str:
    """The request path, or "" when the request line could not be parsed (no attribute then)."""
    return getattr(request, "path", None) or ""


def _method(request: HTTPRequestParser) -> str:
    return getattr(request, "command", None) or ""


class Guard:
    """Per-server policy, consulted by the channel and the server's maintenance pass."""

    def __init__(self, state: State, app):
        self.state = state
        self.config = state.config
        self.keys = tuple(k.encode() for k in state.config.api_keys)
        self.url_map = app.url_map

    def check_headers(self, request: HTTPRequestParser) -> Error | None:
        """Called once the headers are parsed, before any of the body is read."""
        if self.keys:
            limiter = self.state.limiter
            refused = policy.authenticate(
                self.keys, _path(request), presented_key(lambda name: _header(request, name)), limiter,
                lambda: limiter.client_address(getattr(request, "peer", None), _header(request, "X-Forwarded-For")))
            if refused is not None:
                return Refusal(refused)
        if request.content_length > self.config.max_body_bytes:
            return self.too_large()
        if request.content_length > request.adj.inbuf_overflow and not request.spool(request.content_length):
            return self.spool_full()
        if _method(request) == "POST" and self.route(request) == EXPLAIN_RULE:
            return request.admit_explain(self.state.explain)
        return None

    def too_large(self) -> Error:
        return Refusal(ApiError(f"larger than the limit of {self.config.max_body_bytes} bytes (VISION_MAX_BODY_BYTES)",
                                code=BODY_TOO_LARGE))

    def spool_full(self) -> Error:
        return overloaded("the server is receiving too many large uploads at once (VISION_SPOOL_MB); retry "
                          "after the Retry-After delay")

    def check_chunks(self, request: GuardedParser) -> Error | None:
        """Called as a chunked body arrives: its size, its spool space and its average chunk size."""
        receiver, buf = request.body_rcv, request.body_rcv.buf
        size = len(buf)
        if size > self.config.max_body_bytes:
            return self.too_large()
        if buf.appends > FREE_CHUNKS + size // MIN_CHUNK or len(receiver.control_line) > MAX_CONTROL_LINE \
                or len(receiver.trailer) > MAX_TRAILER:
            return Refusal(ApiError(f"chunked body with chunks of under {MIN_CHUNK} bytes on average, or an "
                                    "overlong chunk header or trailer; send the body with a Content-Length or in "
                                    "larger chunks", code=INVALID_REQUEST))
        if size > request.adj.inbuf_overflow and size > request.spooled and not request.spool(SPOOL_STEP):
            return self.spool_full()
        return None

    def route(self, request: HTTPRequestParser) -> str:
        """The route template of ``request``'s path (a closed set, safe as a metrics label)."""
        try:
            rule, _ = self.url_map.bind("").match(_path(request) or "/", method=_method(request) or "GET",
                                                  return_rule=True)
            return rule.rule
        except Exception:  # NotFound, MethodNotAllowed, malformed paths
            return "unmatched"

    def record(self, request: HTTPRequestParser, error: Error, rid: str, body_bytes: int, duration: float,
               remote: str | None) -> None:
        """Access log + metrics for an answer Flask never saw: the policy's, as the app records its own."""
        policy.record(self.state.metrics, request_id=rid, method=_method(request), path=_path(request),
                      route=self.route(request), model="", status=error.code, code=error.error_code,
                      shed=getattr(error, "shed", None), duration=duration, bytes_in=request.content_length or 0,
                      bytes_out=body_bytes, remote_addr=remote, user_agent=_header(request, "User-Agent") or None,
                      answered_by=policy.HTTP_LAYER)


class JsonErrorTask(ErrorTask):
    """Waitress's error answer with the API's JSON body, logged and counted like any response."""

    def execute(self):
        e = self.request.error
        if getattr(e, "error_code", None) is None:  # Waitress's own error: its code by its status
            e.error_code = policy.framework_code(e.code)
        code = e.error_code
        message = str(e.body).strip() or e.reason
        if e.code == 413:
            message = f"request body is too large ({message}); send a smaller image"
        elif e.code == 408:
            message = f"the request did not arrive within {message} seconds; send it in one go"
        body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.response_headers.extend(getattr(e, "headers", ()))
        rid = request_id(_header(self.request, REQUEST_ID_HEADER) or None)
        self.response_headers.append((REQUEST_ID_HEADER, rid))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        guard = getattr(self.channel.server, "vision_guard", None)
        if guard is not None:  # after the answer is queued: accounting must never cost the client it
            started = getattr(self.request, "vision_started", None) or time.monotonic()
            guard.record(self.request, e, rid, len(body), time.monotonic() - started, self.channel.addr[0]
                         if isinstance(self.channel.addr, tuple) else None)


class _CountingBuffer(OverflowableBuffer):
    """A chunked body's buffer: ``ChunkedReceiver`` appends once per chunk (or part of one)."""

    appends = 0

    def append(self, s):
        self.appends += 1
        return super().append(s)


def _release(budget, held: list[int]) -> None:
    budget.release(held[0])
    held[0] = 0


class GuardedParser(HTTPRequestParser):
    """Runs the guard's header check the moment the headers are complete, and its chunk check as a
    chunked body arrives. What the request holds (spool bytes, an explain slot) is given back when
    Waitress closes the request or, if the connection dies first, when the parser is freed."""

    guard: Guard | None = None
    _spool_release = None
    _explain_release = None

    @property
    def spooled(self) -> int:
        return self._spool_held[0] if self._spool_release is not None else 0

    def spool(self, nbytes: int) -> bool:
        budget = self.guard.state.spool
        if not budget.reserve(nbytes):
            return False
        if self._spool_release is None:
            self._spool_held = [0]
            self._spool_release = weakref.finalize(self, _release, budget, self._spool_held)
        self._spool_held[0] += nbytes
        return True

    def admit_explain(self, budget) -> Error | None:
        retry = budget.admit()
        if retry is not None:
            return overloaded("the server's budget for explanations is used up (VISION_EXPLAIN_*); retry after "
                              "the Retry-After delay", str(max(1, round(retry + 0.5))))
        self._explain_release = weakref.finalize(self, budget.leave)
        return None

    def received(self, data):
        if not hasattr(self, "vision_started"):
            self.vision_started = time.monotonic()
        headers_were_finished = self.headers_finished
        consumed = super().received(data)
        if self.guard is None or self.error is not None:
            return consumed
        if not headers_were_finished and self.headers_finished:
            if self.chunked and self.body_rcv is not None:  # nothing of the body is buffered yet
                self.body_rcv.buf = _CountingBuffer(self.adj.inbuf_overflow)
            error = self.guard.check_headers(self)
        elif self.chunked and headers_were_finished and not self.completed:
            error = self.guard.check_chunks(self)
        else:
            error = None
        if error is not None:  # answer now; the body (or the rest of it) is never buffered
            self.error = error
            self.completed = True
            self.vision_refused = True
        return consumed

    def close(self):
        super().close()
        for release in (self._spool_release, self._explain_release):
            if release is not None:
                release()


def guarded_channel(base: type[HTTPChannel], guard: Guard) -> type[HTTPChannel]:
    """``base`` with the guard's parser and JSON error answers (one class per server)."""
    parser = type("Parser", (GuardedParser,), {"guard": guard})

    def parser_class(channel):  # a property: each parser learns its peer (for rate limits)
        def make(adj):
            request = parser(adj)
            request.peer = channel.addr[0] if isinstance(channel.addr, tuple) else None
            return request
        return make

    return type("GuardedChannel", (base,), {"parser_class": property(parser_class),
                                            "error_task_class": JsonErrorTask})


def install(waitress_server, guard: Guard) -> None:
    """Wire the guard into a Waitress server: slow-client deadline and load shedding."""
    config = guard.config
    server = waitress_server
    server.vision_guard = guard
    dispatcher = server.task_dispatcher
    base_maintenance = server.maintenance
    base_add_task = server.add_task

    def maintenance(now):
        base_maintenance(now)  # idle keep-alive connections (channel_timeout)
        cutoff = time.monotonic() - config.read_timeout
        for channel in list(server.active_channels.values()):
            request = getattr(channel, "request", None)
            started = getattr(request, "vision_started", None)
            if request is not None and not request.completed and started is not None and started < cutoff:
                # Answer 408 through the normal task path (JSON, logged), then close.
                request.error = Refusal(ApiError(f"{config.read_timeout:g}", code=REQUEST_TIMEOUT))
                request.completed = True
                with channel.requests_lock:
                    channel.request = None
                    channel.requests.append(request)
                    if len(channel.requests) == 1:
                        base_add_task(channel)

    def workers_busy() -> bool:
        return bool(dispatcher.queue) or dispatcher.active_count >= len(dispatcher.threads) - dispatcher.stop_count

    def add_task(channel):
        request = channel.requests[0] if channel.requests else None
        if (request is not None and request.error is None and _method(request) in ("GET", "HEAD")
                and _path(request) in PROBE_PATHS and len(channel.requests) == 1 and channel.total_outbufs_len == 0
                and workers_busy()):
            # A probe is a few hundred µs through the app: answered here (deferred through the trigger, as
            # below), it never waits behind the busy worker threads.
            server.trigger.pull_trigger(channel.service)
            return
        if request is not None and getattr(request, "vision_refused", False) and channel.total_outbufs_len == 0:
            # The guard's refusals (401, 413, 503 …) are answered from the event-loop thread too: a
            # flood of them must not queue in front of the requests the worker threads serve.
            server.trigger.pull_trigger(channel.service)
            return
        if (request is not None and request.error is None and len(dispatcher.queue) >= config.max_queue
                and _path(request) not in UNSHEDDABLE and channel.total_outbufs_len == 0):
            # Answer from the event-loop thread: a tiny JSON 503 that needs no worker thread. Deferred
            # through the trigger because the caller holds the channel's (non-reentrant) requests lock.
            request.error = overloaded("the server is at capacity; retry after the Retry-After delay")
            server.trigger.pull_trigger(channel.service)
            return
        base_add_task(channel)

    server.maintenance = maintenance
    server.add_task = add_task
