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

asyncua is imported here only, when OPC UA is configured: a line PC without it needs no asyncua.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import json
import logging
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from inspector.config import OpcuaConfig, mask_secrets
from inspector.errors import ConfigError, InspectorError

if TYPE_CHECKING:  # the types only; the modules are imported in `_asyncua` when OPC UA is configured
    from asyncua import Server
    from cryptography import x509

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:board-inspector:line"  # the same on every station, so one PLC program fits them all
DEFAULT_PORT = 4840
START_TIMEOUT_SECONDS = 60.0  # building the standard address space takes about a second
STOP_TIMEOUT_SECONDS = 10.0
OFFLINE_GRACE_SECONDS = 1.0  # a clean stop waits at most this for subscribers to see the station offline
STATE_TIMEOUT_SECONDS = 5.0  # station_state waits at most this for the server's loop
TRIGGER_TIMEOUT_SECONDS = 5.0  # a Trigger call answers within this, or BadTimeout
MAX_PART_ID_CHARS = 256  # as over MQTT
MAX_TEXT_CHARS = 250  # ErrorText fits a PLC STRING (254)
REMEMBERED_LATE_ACKS = 1024

# PLC.ErrorCode: what the line should see first (docs/line-guide.md lists them).
ERROR_NONE = 0
ERROR_ACK_TIMEOUT = 1  # the PLC did not acknowledge the presented result in time; results wait for it
ERROR_STATION_FAULT = 2  # the feed is not ready and says why (station_state's last_error)
ERROR_OFFLINE = 3  # the feed stopped

# VisionSystem.SystemState: OPC 40100-1 SystemStateDataType (SEMI E10).
SYSTEM_PRODUCTION, SYSTEM_STANDBY, SYSTEM_UNSCHEDULED_DOWNTIME, SYSTEM_NONSCHEDULED = 1, 2, 5, 6

# Result.ResultState: OPC 40100-1 ResultStateDataType. It says whether processing completed, not the
# verdict: pass, fail and review are all Completed; the verdict is in ResultContent and PLC.LastVerdict.
RESULT_COMPLETED, RESULT_ABORTED, RESULT_FAILED = 1, 3, 4
NOT_INSPECTED = "not inspected"  # the camera's answer when it had nothing fit to judge (Aborted)

# PLC.LastVerdictCode: the verdict as a number, for PLCs that do not compare strings.
VERDICT_CODES = {"pass": 1, "fail": 2, "review": 3, "error": 4}

ACQUISITION_TIMINGS = ("capture", "decode")  # timings_ms that count as getting the image
NO_TIME = datetime(1601, 1, 1, tzinfo=timezone.utc)  # OPC UA's minimum DateTime: no result yet

TriggerCallback = Callable[[str], None]  # = outputs.TriggerCallback (importing outputs here would be a cycle)

PLC_VARIABLES = (  # name, variant type, initial value
    ("Station", "String", ""), ("Ready", "Boolean", False), ("ResultReady", "Boolean", False),
    ("ResultAck", "Boolean", False), ("LastResultId", "String", ""), ("LastPartId", "String", ""),
    ("LastVerdict", "String", ""), ("LastVerdictCode", "Int32", 0), ("LastScore", "Double", -1.0),
    ("PassCount", "UInt32", 0), ("FailCount", "UInt32", 0), ("ReviewCount", "UInt32", 0),
    ("ErrorCode", "Int32", ERROR_NONE), ("ErrorText", "String", ""),
)
RESULT = "VisionSystem.ResultManagement.Results.Result"
RESULT_VARIABLES = (
    ("ResultId", "String", ""), ("IsPartial", "Boolean", False), ("ResultState", "Int32", 0),
    ("PartId", "String", ""), ("JobId", "String", ""), ("InternalRecipeId", "String", ""),
    ("CreationTime", "DateTime", NO_TIME), ("ResultContent", "String", ""),
)
PROCESSING_TIMES = (
    ("StartTime", "DateTime", NO_TIME), ("EndTime", "DateTime", NO_TIME),
    ("AcquisitionDuration", "Double", 0.0), ("ProcessingDuration", "Double", 0.0),
)


def _asyncua() -> Any:
    try:
        import asyncua
    except ImportError as exc:
        raise InspectorError("[lineout.opcua] needs asyncua, which is not installed: "
                             "pip install board-inspector[line]") from exc
    return asyncua


def _ua() -> Any:
    """asyncua's `ua` module, untyped: its annotations want its own int and str subclasses everywhere."""
    return _asyncua().ua


def _one_line(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    flat = " ".join(mask_secrets(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (nothing else on the network can reach it)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def part_id_problem(part_id: Any) -> str | None:
    """Why a Trigger's partId is refused, or None."""
    if not isinstance(part_id, str):
        return "partId must be a String"
    if len(part_id) > MAX_PART_ID_CHARS:
        return f"partId longer than {MAX_PART_ID_CHARS} characters"
    if any(unicodedata.category(ch).startswith("C") for ch in part_id):
        return "partId holds control characters"
    return None


class ClientTrust:
    """The client certificates allowed in (`trusted_clients_dir`): a certificate is trusted when it is in the
    folder itself (a PLC's self-signed certificate, copied there) or issued directly by a CA certificate in
    the folder, and it is within its validity dates. The folder is read again at each check, so a certificate
    copied in (or removed) counts from the next connection. No folder: any valid certificate (logged)."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder) if folder else None

    def anchors(self) -> list[x509.Certificate]:
        from cryptography import x509

        if self.folder is None:
            return []
        found: list[x509.Certificate] = []
        for path in sorted(self.folder.iterdir()):
            try:
                if not path.is_file():
                    continue
                data = path.read_bytes()
                if b"-----BEGIN CERTIFICATE-----" in data:
                    found.extend(x509.load_pem_x509_certificates(data))
                else:
                    found.append(x509.load_der_x509_certificate(data))
            except (OSError, ValueError) as exc:
                log.warning("lineout.opcua.trusted_clients_dir: %s is not a certificate (%s); ignored", path, exc)
        return found

    def problem(self, certificate: x509.Certificate) -> str | None:
        """Why `certificate` may not connect, or None."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.serialization import Encoding

        now = datetime.now(timezone.utc)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return "certificate outside its validity dates"
        if self.folder is None:
            return None
        der = certificate.public_bytes(Encoding.DER)
        for anchor in self.anchors():
            if anchor.public_bytes(Encoding.DER) == der:
                return None
            try:
                is_ca = anchor.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
                if is_ca and certificate.issuer == anchor.subject:
                    certificate.verify_directly_issued_by(anchor)
                    return None
            except (x509.ExtensionNotFound, ValueError, TypeError, InvalidSignature):
                continue
        return f"certificate not in {self.folder}"


@dataclass
class _Presented:
    """The result in the model, until the PLC acknowledges it."""

    result_id: str
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    own_wait: bool = False  # its own delivery is waiting for the ack now
    overdue: bool = False  # the PLC let a timeout pass without acknowledging it (ErrorCode 1)


class OpcuaOutput:
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
            return _one_line(f"OPC UA delivery failed: {exc}")

    def station_state(self, *, online: bool, ready: bool, last_error: str | None) -> None:
        self._requested = (online, ready, _one_line(last_error) if last_error else None)
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

    def _read_certificates(self) -> tuple[Any, Any, str | None]:
        """The server's certificate and key (PEM or DER), and the application URI its certificate names (clients
        compare it with the server's, so the server takes it from there)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        files = {}
        for setting in ("certificate_file", "private_key_file"):
            path = Path(getattr(self.config, setting))
            try:
                files[setting] = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"lineout.opcua.{setting} {path}: cannot read ({exc.strerror or exc})") from exc
        data = files["certificate_file"]
        try:
            certificate = (x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data
                           else x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise ConfigError(f"lineout.opcua.certificate_file {self.config.certificate_file}: "
                              f"not a PEM or DER certificate ({exc})") from exc
        data = files["private_key_file"]
        try:
            key = (serialization.load_pem_private_key(data, None) if b"-----BEGIN" in data
                   else serialization.load_der_private_key(data, None))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"lineout.opcua.private_key_file {self.config.private_key_file}: not an unencrypted "
                              f"PEM or DER private key ({exc})") from exc
        try:
            names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            uris = names.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        if not uris:
            log.warning("lineout.opcua.certificate_file names no application URI (subjectAltName URI:...); "
                        "most clients refuse such a server")
        return certificate, key, uris[0] if uris else None

    async def _validate_client(self, certificate: x509.Certificate, description: Any) -> None:
        """CreateSession: the client application's certificate must be trusted."""
        ua = _ua()
        from asyncua.common.utils import ServiceError

        problem = self.trust.problem(certificate)
        if problem:
            log.warning("OPC UA client %s refused: %s", getattr(description, "ApplicationUri", "?"), problem)
            code = (ua.StatusCodes.BadCertificateTimeInvalid if "validity" in problem
                    else ua.StatusCodes.BadCertificateUntrusted)
            raise ServiceError(code)

    async def _build_model(self, server: Server) -> None:
        ua = _ua()

        idx = await server.register_namespace(NAMESPACE_URI)
        objects = server.nodes.objects

        def node_id(path: str) -> Any:
            return ua.NodeId(path, idx)

        async def variables(parent: Any, prefix: str, specs: tuple[tuple[str, str, Any], ...]) -> None:
            for name, type_name, value in specs:
                vtype = getattr(ua.VariantType, type_name)
                node = await parent.add_variable(node_id(f"{prefix}.{name}"), ua.QualifiedName(name, idx),
                                                 ua.Variant(value, vtype))
                self._nodes[name if prefix == "PLC" else f"{prefix}.{name}"] = (node.nodeid, vtype)

        vision = await objects.add_object(node_id("VisionSystem"), ua.QualifiedName("VisionSystem", idx))
        machine = await vision.add_object(node_id("VisionSystem.VisionStateMachine"),
                                          ua.QualifiedName("VisionStateMachine", idx))
        await variables(machine, "VisionSystem.VisionStateMachine", (("CurrentState", "LocalizedText",
                                                                      ua.LocalizedText("Preoperational")),))
        await variables(vision, "VisionSystem", (("SystemState", "Int32", SYSTEM_STANDBY),
                                                 ("SystemStateDescription", "String", "")))
        management = await vision.add_object(node_id("VisionSystem.ResultManagement"),
                                             ua.QualifiedName("ResultManagement", idx))
        results = await management.add_folder(node_id("VisionSystem.ResultManagement.Results"),
                                              ua.QualifiedName("Results", idx))
        result = await results.add_object(node_id(RESULT), ua.QualifiedName("Result", idx))
        await variables(result, RESULT, RESULT_VARIABLES)
        times = await result.add_object(node_id(f"{RESULT}.ProcessingTimes"), ua.QualifiedName("ProcessingTimes", idx))
        await variables(times, f"{RESULT}.ProcessingTimes", PROCESSING_TIMES)

        plc = await objects.add_object(node_id("PLC"), ua.QualifiedName("PLC", idx))
        await variables(plc, "PLC", PLC_VARIABLES)
        # The one variable a client may write: the handshake's acknowledgement.
        await server.get_node(self._nodes["ResultAck"][0]).set_writable(True)
        if self.on_trigger is not None:
            argument = ua.Argument(Name="partId", DataType=ua.NodeId(ua.ObjectIds.String), ValueRank=-1,
                                   Description=ua.LocalizedText("the part to inspect (\"\" when unknown)"))
            await plc.add_method(node_id("PLC.Trigger"), ua.QualifiedName("Trigger", idx), self._trigger,
                                 [argument], [])
        await self._write("Station", self.station)
        await self._show_state()

    # ------------------------------------------------------------------ the model (on the server's loop)

    async def _write(self, name: str, value: Any) -> None:
        ua = _ua()

        server = self._server
        assert server is not None  # noqa: S101 - set in _build, before the model
        node, vtype = self._nodes[name]
        now = datetime.now(timezone.utc)
        await server.write_attribute_value(node, ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=now,
                                                              ServerTimestamp=now))

    def _read(self, name: str) -> Any:
        server = self._server
        assert server is not None  # noqa: S101
        value = server.read_attribute_value(self._nodes[name][0]).Value
        return value.Value if value is not None else None

    async def _show_state(self) -> None:
        ua = _ua()

        online, ready, last_error = self._requested
        if not online:
            code, text = ERROR_OFFLINE, last_error or "station offline"
        elif self._overdue_text:
            code, text = ERROR_ACK_TIMEOUT, self._overdue_text
        elif last_error and not ready:  # while ready, the last error is history, not a fault
            code, text = ERROR_STATION_FAULT, last_error
        else:
            code, text = ERROR_NONE, ""
        if not online:
            system, machine = SYSTEM_NONSCHEDULED, "Halted"
        elif code:
            system, machine = SYSTEM_UNSCHEDULED_DOWNTIME, "Error"
        elif ready:
            system, machine = SYSTEM_PRODUCTION, "Operational"
        else:
            system, machine = SYSTEM_STANDBY, "Preoperational"
        await self._write("Ready", online and ready)
        await self._write("ErrorText", text)
        await self._write("ErrorCode", code)
        await self._write("VisionSystem.SystemState", system)
        await self._write("VisionSystem.SystemStateDescription", text or machine)
        await self._write("VisionSystem.VisionStateMachine.CurrentState", ua.LocalizedText(machine))

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
                self._overdue_text = _one_line(f"PLC did not acknowledge result {presented.result_id} "
                                               f"within {timeout:g} s")
                log.warning("%s (lineout.opcua.ack_timeout_seconds)", self._overdue_text)
                await self._show_state()
            return False
        finally:
            presented.own_wait = False

    async def _present(self, verdict: dict[str, Any], result_id: str) -> _Presented:
        """Write the result into the model, then ResultAck = False, then ResultReady = True (in this order, so
        a PLC that sees ResultReady and not ResultAck reads a whole result)."""
        verdict_name = str(verdict.get("verdict") or "")
        score = verdict.get("score")
        created = _creation_time(verdict.get("time"))
        timings = {str(k): float(v) for k, v in (verdict.get("timings_ms") or {}).items()
                   if isinstance(v, int | float)}
        acquisition = sum(timings.get(name, 0.0) for name in ACQUISITION_TIMINGS)
        processing = timings.get("total", sum(v for k, v in timings.items() if k not in ACQUISITION_TIMINGS))
        part_id = str(verdict.get("part_id") or "")
        content = {"verdict": verdict_name, "score": score, "threshold": verdict.get("threshold"),
                   "regions": verdict.get("regions") or [], "error": verdict.get("error")}
        values: list[tuple[str, Any]] = [
            (f"{RESULT}.ResultId", result_id), (f"{RESULT}.ResultState", _result_state(verdict)),
            (f"{RESULT}.PartId", part_id), (f"{RESULT}.JobId", str(verdict.get("inspection_id") or "")),
            (f"{RESULT}.InternalRecipeId", str(verdict.get("model_hash") or "")),
            (f"{RESULT}.CreationTime", created),
            (f"{RESULT}.ProcessingTimes.StartTime", created - timedelta(milliseconds=acquisition + processing)),
            (f"{RESULT}.ProcessingTimes.EndTime", created),
            (f"{RESULT}.ProcessingTimes.AcquisitionDuration", acquisition),
            (f"{RESULT}.ProcessingTimes.ProcessingDuration", processing),
            (f"{RESULT}.ResultContent", json.dumps(content, separators=(",", ":"), default=str)),
            ("LastResultId", result_id), ("LastPartId", part_id), ("LastVerdict", verdict_name),
            ("LastVerdictCode", VERDICT_CODES.get(verdict_name, 0)),
            ("LastScore", float(score) if isinstance(score, int | float) else -1.0),
        ]
        if verdict_name in self._counts:
            self._counts[verdict_name] += 1
            values.append((f"{verdict_name.capitalize()}Count", self._counts[verdict_name]))
        for name, value in values:
            await self._write(name, value)
        self._presented = _Presented(result_id)
        await self._write("ResultAck", False)
        await self._write("ResultReady", True)
        return self._presented

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

    async def _trigger(self, _parent: Any, *arguments: Any) -> Any:
        """PLC.Trigger(partId): the line asks for an inspection of that part. Answers once `on_trigger` took it."""
        ua = _ua()

        if len(arguments) != 1:
            return ua.StatusCode(ua.StatusCodes.BadArgumentsMissing if not arguments
                                 else ua.StatusCodes.BadTooManyArguments)
        part_id = arguments[0].Value
        problem = part_id_problem(part_id)
        if problem or self.on_trigger is None:
            log.warning("OPC UA trigger refused: %s", problem or "no trigger wanted")
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        try:
            # On a worker thread: the callback may block, the server's loop must not.
            await asyncio.wait_for(asyncio.to_thread(self.on_trigger, part_id), TRIGGER_TIMEOUT_SECONDS)
        except asyncio.TimeoutError:
            log.warning("OPC UA trigger for part %r not taken within %g s", part_id, TRIGGER_TIMEOUT_SECONDS)
            return ua.StatusCode(ua.StatusCodes.BadTimeout)
        except Exception:  # noqa: BLE001 - the caller gets a Bad status, the server goes on
            log.exception("OPC UA trigger for part %r failed", part_id)
            return ua.StatusCode(ua.StatusCodes.BadInternalError)
        return []


async def _let_subscribers_see(server: Server) -> None:
    """Subscribed clients get a change at their next publishing cycle: wait for it (at most a second), so the
    offline state reaches them before the server closes."""
    intervals = [sub.data.RevisedPublishingInterval for sub in server.iserver.subscription_service.subscriptions.values()]
    if intervals:
        await asyncio.sleep(min(OFFLINE_GRACE_SECONDS, max(intervals) / 1000 + 0.05))


def _station_users(secure: bool, trust: ClientTrust) -> Any:
    """Who a session runs as: a plain user, never Admin (so AccessLevel decides every write); on a secure
    server only the holder of a trusted certificate (the X.509 identity token's, checked by its signature)."""
    from asyncua.crypto.permission_rules import User, UserRole
    from asyncua.server.user_managers import UserManager

    class StationUsers(UserManager):
        def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                     certificate: Any = None) -> User | None:
            if not secure:
                return User(role=UserRole.User, name="local")
            if certificate is None:
                return None
            problem = trust.problem(_x509(certificate))
            if problem:
                log.warning("OPC UA user certificate refused: %s", problem)
                return None
            return User(role=UserRole.User, name="certificate")

    return StationUsers()


def _x509(certificate: Any) -> x509.Certificate:
    from cryptography import x509

    return x509.load_der_x509_certificate(certificate) if isinstance(certificate, bytes) else certificate


def _creation_time(value: Any) -> datetime:
    try:
        created = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.now(timezone.utc)
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def _result_state(verdict: dict[str, Any]) -> int:
    if verdict.get("verdict") != "error":
        return RESULT_COMPLETED
    return RESULT_ABORTED if str(verdict.get("error") or "").startswith(NOT_INSPECTED) else RESULT_FAILED


def _refuse_unsecured_sessions(server: Server) -> None:
    """OPC UA keeps an unsecured channel open for endpoint discovery even when no endpoint offers it, and
    asyncua runs any session opened on it without permission checks. Give that channel a policy whose rules
    refuse every service after ActivateSession (discovery and session set-up are not checked), so a client
    cannot downgrade a signed server to plain text. `_policies` is where asyncua keeps the channel policies
    it chooses from; the endpoints it advertises are unchanged."""
    ua = _ua()
    from asyncua.crypto.permission_rules import PermissionRuleset
    from asyncua.crypto.security_policies import SecurityPolicyFactory, SecurityPolicyNone

    class NothingAllowed(PermissionRuleset):
        def check_validity(self, user: Any, action_type_id: Any, body: Any) -> bool:
            return False

    server._policies.append(SecurityPolicyFactory(SecurityPolicyNone, ua.MessageSecurityMode.None_,
                                                  permission_ruleset=NothingAllowed()))


def _quiet_asyncua() -> None:
    """asyncua logs every request at INFO; a runner logging at INFO would drown in it. Its warnings and errors
    (refused clients) still show; a logging set-up that names the `asyncua` logger keeps its own level."""
    library = logging.getLogger("asyncua")
    if library.level == logging.NOTSET:
        library.setLevel(logging.WARNING)
