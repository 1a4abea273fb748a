"""The address space of the station's OPC UA server (inspector/feeds/opcua_out.py): the namespace, the
`VisionSystem` subset of OPC 40100-1, the latest result, the `PLC` variables and the `Trigger(partId)` method,
and the writes that keep them current (on the server's loop)."""

from __future__ import annotations

import asyncio
import json
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from inspector.errors import InspectorError
from inspector.feeds.capture import NOT_INSPECTED
from inspector.feeds.mqtt_trigger import MAX_PART_ID_CHARS

if TYPE_CHECKING:  # the types only; the modules are imported in `_asyncua` when OPC UA is configured
    from asyncua import Server

log = logging.getLogger("inspector.feeds.opcua_out")  # the feed's one logger, as before the split

NAMESPACE_URI = "urn:board-inspector:line"  # the same on every station, so one PLC program fits them all
TRIGGER_TIMEOUT_SECONDS = 5.0  # a Trigger call answers within this, or BadTimeout
MAX_TEXT_CHARS = 250  # ErrorText fits a PLC STRING (254)

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


def part_id_problem(part_id: Any) -> str | None:
    """Why a Trigger's partId is refused, or None."""
    if not isinstance(part_id, str):
        return "partId must be a String"
    if len(part_id) > MAX_PART_ID_CHARS:
        return f"partId longer than {MAX_PART_ID_CHARS} characters"
    if any(unicodedata.category(ch).startswith("C") for ch in part_id):
        return "partId holds control characters"
    return None

@dataclass
class _Presented:
    """The result in the model, until the PLC acknowledges it."""

    result_id: str
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    own_wait: bool = False  # its own delivery is waiting for the ack now
    overdue: bool = False  # the PLC let a timeout pass without acknowledging it (ErrorCode 1)

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


class OpcuaModel:
    """The model's part of `OpcuaOutput`: building the address space and writing into it."""

    station: str
    on_trigger: TriggerCallback | None
    _requested: tuple[bool, bool, str | None]
    _server: Server | None
    _nodes: dict[str, tuple[Any, Any]]
    _presented: _Presented | None
    _overdue_text: str
    _counts: dict[str, int]

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
