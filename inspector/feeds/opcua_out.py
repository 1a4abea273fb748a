"""Verdicts to a PLC over OPC UA (`[lineout.opcua]`): a `LineOutput` (inspector/feeds/outputs.py).

Each station runs its own OPC UA server (asyncua) on a thread with its own event loop. Its address space
(namespace `urn:board-inspector:line`, string NodeIds equal to the browse path) holds:
- `VisionSystem`: the subset of OPC 40100-1 (Machine Vision) that applies, built by name because the
  companion NodeSet is not loaded: `VisionStateMachine/CurrentState`, `SystemState` (SEMI E10 value of
  SystemStateDataType) with `SystemStateDescription`, and `ResultManagement/Results/Result`, the latest
  result (ResultId, IsPartial, ResultState, PartId, JobId, InternalRecipeId, CreationTime, ProcessingTimes,
  ResultContent). Structured types of the NodeSet are flattened into variables of the same names.
- `PLC`: plain variables for PLCs that do not browse models, and the `Trigger(partId)` method.

The handshake (docs/line-guide.md "A PLC over OPC UA" has the diagram): `deliver` writes the result, sets
ResultAck = False, then ResultReady = True, and waits for the PLC to write ResultAck = True; the station then
clears ResultReady. A result is taken while ResultReady and not ResultAck, so a PLC may poll or subscribe.
One result is presented at a time: it stays presented until acknowledged, and the next result waits for
that ack. A PLC late past `ack_timeout_seconds` gets ErrorCode 1 and the Error state, `deliver` returns why,
and the publisher sends the verdict again later: nothing is dropped. While that result is overdue, deliveries
answer at once (a silent PLC costs the other consumers one timeout, not one per verdict); its late ack is
remembered, so its next delivery is taken without presenting it twice, and the results behind it follow.

Security: `none` (anonymous, unencrypted) only on a loopback endpoint. `sign` / `sign_and_encrypt` offer
only Basic256Sha256 endpoints and require an X.509 user identity token: anonymous and user-name tokens
are rejected, a client's certificates are checked against `trusted_clients_dir`, and a session on an
unsecured channel (which OPC UA keeps open for endpoint discovery) is refused every service. Only
ResultAck is writable.

The address space is built in opcua_model.py, the certificates and identity checks are in opcua_trust.py.
asyncua is imported in these three modules only, when OPC UA is configured: a line PC without it needs no asyncua.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from inspector.config import OpcuaConfig
from inspector.config.secrets import one_line
from inspector.errors import ConfigError, InspectorError
from inspector.feeds.opcua_model import (
    ERROR_ACK_TIMEOUT,
    MAX_TEXT_CHARS,
    OpcuaModel,
    TriggerCallback,
    _asyncua,
    _Presented,
    _ua,
)
from inspector.feeds.opcua_trust import ClientTrust, ServerTrust, _refuse_unsecured_sessions, _station_users, is_loopback

if TYPE_CHECKING:  # the types only; the modules are imported in `_asyncua` when OPC UA is configured
    from asyncua import Server

log = logging.getLogger(__name__)

DEFAULT_PORT = 4840
START_TIMEOUT_SECONDS = 60.0  # building the standard address space takes about a second
STOP_TIMEOUT_SECONDS = 10.0
OFFLINE_GRACE_SECONDS = 1.0  # a clean stop waits at most this for subscribers to see the station offline
STATE_TIMEOUT_SECONDS = 5.0  # station_state waits at most this for the server's loop
REMEMBERED_LATE_ACKS = 1024


def _endpoint(url: str) -> tuple[str, str, int]:
    """(the endpoint with its port, host, port) of `lineout.opcua.endpoint`."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise ConfigError(f"lineout.opcua.endpoint {url!r}: {exc}") from exc
    host = parts.hostname or ""
    if parts.scheme != "opc.tcp" or not host:
        raise ConfigError(f"lineout.opcua.endpoint must be opc.tcp://HOST:PORT/PATH, got {url!r}")
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit(("opc.tcp", netloc, parts.path, "", "")), host, port


class OpcuaOutput(ServerTrust, OpcuaModel):
    """The station's OPC UA server: a `LineOutput` named "opcua"."""

    name = "opcua"

    def __init__(self, config: OpcuaConfig, station: str, on_trigger: TriggerCallback | None = None) -> None:
        _asyncua()  # a missing extra is one clear error at start-up, not at the first verdict
        self.config = config
        self.station = station
        self.on_trigger = on_trigger
        self.url, self.host, self.port = _endpoint(config.endpoint)
        self.secure = config.security != "none"
        if not self.secure and not is_loopback(self.host):
            raise ConfigError(f"lineout.opcua: endpoint {self.url} listens beyond this machine: "
                              "anonymous OPC UA only on localhost; use sign or sign_and_encrypt with certificates")
        if self.secure and not (config.certificate_file and config.private_key_file):
            raise ConfigError(f"lineout.opcua: security = {config.security} needs certificate_file and "
                              "private_key_file (the server's certificate and key)")
        self.trust = ClientTrust(config.trusted_clients_dir if self.secure else "")
        self._requested: tuple[bool, bool, str | None] = (True, False, None)  # online, ready, last_error
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._lifecycle = threading.Lock()
        # Owned by the server's loop from start on:
        self._server: Server | None = None
        self._stop: asyncio.Event | None = None
        self._slot: asyncio.Lock | None = None
        self._nodes: dict[str, tuple[Any, Any]] = {}  # name -> (NodeId, VariantType)
        self._presented: _Presented | None = None
        self._late_acks: OrderedDict[str, None] = OrderedDict()
        self._overdue_text = ""
        self._counts = {"pass": 0, "fail": 0, "review": 0}

    # ------------------------------------------------------------------ LineOutput

    def start(self) -> None:
        """Listen; returns once the server accepts connections, or raises why it cannot."""
        with self._lifecycle:
            if self._thread is not None:
                return
            self._started.clear()
            self._start_error = None
            thread = threading.Thread(target=self._run, name=f"opcua-{self.station}", daemon=True)
            thread.start()
            if not self._started.wait(START_TIMEOUT_SECONDS):
                raise InspectorError(f"OPC UA server on {self.url} did not start within {START_TIMEOUT_SECONDS:g} s")
            if self._start_error is not None:
                thread.join(STOP_TIMEOUT_SECONDS)
                error = self._start_error
                if isinstance(error, InspectorError):
                    raise error
                raise InspectorError(f"OPC UA server on {self.url} did not start: {error}") from error
            self._thread = thread
            log.info("OPC UA server of %s listening on %s (security %s)", self.station, self.url, self.config.security)

    def deliver(self, verdict: dict[str, Any]) -> str | None:
        result_id = str(verdict.get("verdict_id") or "")
        loop = self._loop
        if loop is None or self._thread is None:
            return "OPC UA server is not running"
        try:
            future = asyncio.run_coroutine_threadsafe(self._deliver(verdict, result_id), loop)
        except RuntimeError:  # the loop closed under us (close() in another thread)
            return "OPC UA server is not running"
        # Two waits at most: for the result before it, and for this one.
        limit = 2 * self.config.ack_timeout_seconds + STATE_TIMEOUT_SECONDS
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return f"OPC UA server did not answer within {limit:g} s for result {result_id}"
        except concurrent.futures.CancelledError:
            return f"OPC UA server stopped before result {result_id} was acknowledged"
        except Exception as exc:  # noqa: BLE001 - deliver never raises: the verdict is tried again later
            log.exception("OPC UA delivery of result %s failed", result_id)
            return one_line(f"OPC UA delivery failed: {exc}", MAX_TEXT_CHARS)

    def station_state(self, *, online: bool, ready: bool, last_error: str | None) -> None:
        self._requested = (online, ready, one_line(last_error, MAX_TEXT_CHARS) if last_error else None)
        self._call(self._show_state(), "station state")

    def close(self) -> None:
        """Announce the station offline (Ready False, Halted), stop listening and join the thread."""
        with self._lifecycle:
            thread, loop, stop = self._thread, self._loop, self._stop
            if thread is None or loop is None or stop is None:
                return
            self._requested = (False, False, self._requested[2])
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop already ended
                pass
            thread.join(STOP_TIMEOUT_SECONDS)
            if thread.is_alive():
                log.warning("OPC UA server of %s still stopping after %.0f s", self.station, STOP_TIMEOUT_SECONDS)
            self._thread = None
            self._loop = None

    # ------------------------------------------------------------------ the server's thread

    def _call(self, coroutine: Any, what: str) -> None:
        """Run `coroutine` on the server's loop and wait briefly; before start or after close, drop it."""
        loop = self._loop
        if loop is None:
            coroutine.close()
            return
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError:  # the loop closed meanwhile
            coroutine.close()
            return
        try:
            future.result(STATE_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - the line's view of the station is best effort
            log.warning("OPC UA %s not updated: %s", what, exc)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported by start(), or logged when it ends later
            if not self._started.is_set():
                self._start_error = exc
            else:
                log.exception("OPC UA server of %s ended", self.station)
        finally:
            self._loop = None
            self._started.set()

    async def _serve(self) -> None:
        try:
            server = await self._build()
            await self._listen(server)
        except BaseException as exc:
            self._start_error = exc
            self._started.set()
            return
        self._stop = asyncio.Event()
        self._slot = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._started.set()
        try:
            await self._stop.wait()
            await self._show_state()  # offline: ErrorCode 3, Halted
            await _let_subscribers_see(server)
        finally:
            await server.stop()

    async def _listen(self, server: Server) -> None:
        try:
            await server.start()
        except OSError as exc:
            await self._quiet_stop(server)
            raise InspectorError(f"lineout.opcua: cannot listen on {self.host}:{self.port} "
                                 f"({exc.strerror or exc}); is another server on that port?") from exc

    @staticmethod
    async def _quiet_stop(server: Server) -> None:
        try:
            await server.stop()
        except Exception:  # noqa: BLE001 - the start failure is what matters
            log.debug("stopping a server that did not start", exc_info=True)

    async def _build(self) -> Server:
        asyncua = _asyncua()
        ua = asyncua.ua
        from asyncua.common.callback import CallbackType
        from asyncua.crypto.permission_rules import SimpleRoleRuleset

        _quiet_asyncua()
        # Files first: a wrong path fails at once, before the second the standard address space takes.
        certificate, key, application_uri = self._read_certificates() if self.secure else (None, None, None)
        if self.secure and self.trust.folder is not None and not self.trust.folder.is_dir():
            raise ConfigError(f"lineout.opcua.trusted_clients_dir {self.trust.folder}: not a folder")
        server = asyncua.Server(user_manager=_station_users(self.secure, self.trust))
        self._server = server
        self._presented, self._overdue_text = None, ""
        self._late_acks.clear()
        self._counts = dict.fromkeys(self._counts, 0)
        server.name = f"board-inspector {self.station}"
        server.product_uri = "urn:board-inspector"
        server.manufacturer_name = "board-inspector"
        await server.init()
        server.set_endpoint(self.url)
        server.allow_remote_admin(False)
        if self.secure:
            server.iserver.certificate = certificate
            server.iserver.private_key = key
            policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
            if self.config.security == "sign":
                policies.append(ua.SecurityPolicyType.Basic256Sha256_Sign)
            server.set_security_policy(policies, permission_ruleset=SimpleRoleRuleset())
            server.set_identity_tokens([ua.X509IdentityToken])
            server.set_certificate_validator(self._validate_client)
            _refuse_unsecured_sessions(server)
            if self.trust.folder is None:
                log.warning("lineout.opcua: no trusted_clients_dir: any client with a valid certificate may connect")
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity], permission_ruleset=SimpleRoleRuleset())
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        await server.set_application_uri(application_uri or f"urn:board-inspector:{self.station}")
        await self._build_model(server)
        server.subscribe_server_callback(CallbackType.PostWrite, self._after_write)
        return server

    async def _deliver(self, verdict: dict[str, Any], result_id: str) -> str | None:
        assert self._slot is not None  # noqa: S101 - set before start() returns
        timeout = self.config.ack_timeout_seconds
        async with self._slot:
            if result_id in self._late_acks:  # acknowledged after its deliver gave up: the PLC has it
                del self._late_acks[result_id]
                return None
            presented = self._presented
            if presented is not None and presented.overdue:
                # The PLC had its full timeout for that result and ErrorCode 1 says so: answer at once, so a
                # silent PLC costs the line's other consumers one timeout, not one per verdict. Its late ack
                # is remembered; the publisher sends again later.
                if presented.result_id == result_id:
                    return f"PLC has not acknowledged result {result_id} yet (ErrorCode {ERROR_ACK_TIMEOUT})"
                return (f"result {result_id} waits: PLC has not acknowledged result {presented.result_id} "
                        f"(ErrorCode {ERROR_ACK_TIMEOUT})")
            if presented is not None and presented.result_id != result_id:
                # Left by a delivery that was cancelled mid-wait: one result at a time, so the next waits.
                if not await self._acked(presented, timeout, own=False):
                    return (f"result {result_id} waits: PLC did not acknowledge result {presented.result_id} "
                            f"within {timeout:g} s")
                presented = None
            if presented is None:
                presented = await self._present(verdict, result_id)
            if await self._acked(presented, timeout, own=True):
                return None
            return f"PLC did not acknowledge result {result_id} within {timeout:g} s"

    async def _acked(self, presented: _Presented, timeout: float, *, own: bool) -> bool:
        """Wait for the PLC's ack of `presented` (`own`: in the delivery of that result); past `timeout`, the
        result is overdue: ErrorCode 1, and no."""
        presented.own_wait = own
        try:
            await asyncio.wait_for(presented.acked.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            presented.overdue = True
            if not self._overdue_text:
                self._overdue_text = one_line(f"PLC did not acknowledge result {presented.result_id} "
                                              f"within {timeout:g} s", MAX_TEXT_CHARS)
                log.warning("%s (lineout.opcua.ack_timeout_seconds)", self._overdue_text)
                await self._show_state()
            return False
        finally:
            presented.own_wait = False

    async def _after_write(self, event: Any, _dispatcher: Any) -> None:
        """A client wrote: ResultAck = True acknowledges the presented result (ignored when none is)."""
        if not event.is_external:
            return
        ua = _ua()

        ack_node = self._nodes["ResultAck"][0]
        for item, status in zip(event.request_params.NodesToWrite, event.response_params or []):
            if (item.NodeId == ack_node and item.AttributeId == ua.AttributeIds.Value and status.is_good()
                    and self._read("ResultAck") is True):
                await self._acknowledge()

    async def _acknowledge(self) -> None:
        presented = self._presented
        if presented is None:
            return
        self._presented = None
        presented.acked.set()
        await self._write("ResultReady", False)
        if not presented.own_wait:  # its delivery gave up (or was cancelled): the next one is taken at once
            self._late_acks[presented.result_id] = None
            while len(self._late_acks) > REMEMBERED_LATE_ACKS:
                self._late_acks.popitem(last=False)
        if self._overdue_text:
            log.info("PLC acknowledged result %s late; results flow again", presented.result_id)
            self._overdue_text = ""
            await self._show_state()

async def _let_subscribers_see(server: Server) -> None:
    """Subscribed clients get a change at their next publishing cycle: wait for it (at most a second), so the
    offline state reaches them before the server closes."""
    intervals = [sub.data.RevisedPublishingInterval for sub in server.iserver.subscription_service.subscriptions.values()]
    if intervals:
        await asyncio.sleep(min(OFFLINE_GRACE_SECONDS, max(intervals) / 1000 + 0.05))


def _quiet_asyncua() -> None:
    """asyncua logs every request at INFO; a runner logging at INFO would drown in it. Its warnings and errors
    (refused clients) still show; a logging set-up that names the `asyncua` logger keeps its own level."""
    library = logging.getLogger("asyncua")
    if library.level == logging.NOTSET:
        library.setLevel(logging.WARNING)
