"""The line's settings: inference (`[inspect]`), the feeds (`[runner]`, `[camera]`), the dashboard,
teaching, the line outputs (`[lineout.*]`), and `Settings`, a whole deployment's file."""

from __future__ import annotations

from dataclasses import dataclass, field

from inspector.config.modes import GRAPH_OPTIMIZATIONS, PROVIDERS, GraphOptimization, Providers, one_of
from inspector.config.secrets import resolve_db_url
from inspector.config.training import TrainConfig
from inspector.errors import ConfigError


@dataclass
class InspectConfig:
    """Inference and post-processing on the line."""

    providers: Providers = "auto"  # "auto" (CUDA when available), "cpu", "cuda"
    intra_op_threads: int = 0  # 0 = ONNX Runtime default (all cores)
    graph_optimization: GraphOptimization = "all"  # "disable", "basic", "extended", "all"
    # ONNX Runtime's idle workers spin for a while after each call; on a 2-core line PC they steal
    # the core that decodes and post-processes the board (measured: e2e 50 -> 55 boards/s without).
    spin_threads: bool = False
    batch_size: int = 4
    min_region_area: int = 16  # pixels at input resolution; smaller regions are dropped
    review_band: float = 0.0  # >0 enables "review" for scores within this fraction below threshold
    max_pixels: int = 40_000_000  # refuse images larger than this (decompression bombs)
    save_reconstruction: bool = False
    # On load, recompute the maps export recorded (selftest.npz) and refuse a bundle this machine
    # computes differently: its thresholds would not hold (e.g. INT8 on a CPU without VNNI).
    selftest: bool = True

    def __post_init__(self) -> None:
        if self.providers not in PROVIDERS:
            raise ConfigError(f"providers must be auto, cpu or cuda, got {self.providers!r}")
        one_of("graph_optimization", self.graph_optimization, GRAPH_OPTIMIZATIONS)


@dataclass
class RunnerConfig:
    """The folder feed (`inspector watch`) and what it shares with the camera feed."""

    station: str = "station-1"
    data_dir: str = "data"  # store, processed images and overlays
    db_url: str = ""  # empty = SQLite in data_dir (a password belongs in db_url_file or BOARD_INSPECTOR_DB_URL)
    db_url_file: str = ""  # a file (mode 0600) holding the database URL, so no password shows in argv
    stable_seconds: float = 1.0  # a file must keep its size and mtime this long before it is taken
    poll_seconds: float = 0.5
    max_batch: int = 8  # bound on images held in memory at once
    http_host: str = "127.0.0.1"
    http_port: int = 0  # 0 = no health/metrics endpoint
    hook: str = ""  # command run with each verdict as JSON on stdin
    json_lines: bool = True  # one JSON line per verdict on stdout
    max_attempts: int = 3  # tries of one board (a crash counts) before it is quarantined
    # A verdict the line (stdout, hook) refused this many times is parked: kept, counted on /healthz,
    # resendable with `inspector outbox resend`, and no longer retried ahead of newer verdicts.
    max_publish_attempts: int = 10
    max_file_bytes: int = 256 * 1024 * 1024  # larger inbox files are quarantined unread
    min_free_bytes: int = 256 * 1024 * 1024  # below this free space no new boards are taken (0 = never pause)
    retention_days: float = 0.0  # delete done/, overlays/, camera/ files older than this (0 = keep)
    # The folder runner decodes in a worker process (inspector/feeds/decoder.py): a decode that takes
    # longer than this is killed and its board quarantined with the reason (a real 40-Mpixel board
    # decodes in about a second on a slow line PC)...
    decode_timeout_seconds: float = 10.0
    # ...and one that needs more memory than this beyond the worker's own footprint (about 0.5 GB of
    # address space: Python, numpy, OpenCV) fails inside the worker and is quarantined the same way.
    decode_memory_mb: int = 2048


@dataclass
class CameraConfig:
    """The camera feed (`inspector camera`)."""

    trigger: str = "interval"  # "every", "interval", "stdin", "file"
    interval_seconds: float = 2.0
    trigger_file: str = ""
    open_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 2.0
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    backoff_jitter: float = 0.25
    stale_frame_seconds: float = 1.0  # a frame older than this is never inspected
    # This many triggers in a row answered "not inspected" for a black, blank or stale frame (a strobe or
    # lamp that failed, a frozen stream): an error event and /healthz 503 "degraded" until a frame fit to
    # inspect arrives again. 0 = never.
    degraded_after_triggers: int = 10


@dataclass
class DashboardConfig:
    """`inspector dashboard`."""

    host: str = "127.0.0.1"  # bound to localhost unless told otherwise
    port: int = 8501
    # Both empty = the runner's store ([runner] db_url_file / db_url, else SQLite in the data directory);
    # see `store_url`. A password belongs in db_url_file or BOARD_INSPECTOR_DB_URL.
    db_url: str = ""
    db_url_file: str = ""  # a file (mode 0600) holding the database URL, so no password shows in argv
    users_file: str = ""  # TOML with hashed passwords and roles
    refresh_seconds: float = 2.0
    session_hours: float = 12.0  # a login lasts at most this long (a shift), see deploy/dashboard/sessions.py
    idle_minutes: float = 30.0  # a login unused this long ends (no page run, no auto-refresh)

    def store_url(self, runner: RunnerConfig | None = None, environ: dict[str, str] | None = None) -> str:
        """The store the dashboard opens, found where the runner finds its own and in the same order
        (`resolve_db_url`): `BOARD_INSPECTOR_DB_URL`, else this table's db_url_file, else its db_url,
        else the same two of `runner` (the [runner] table of the same config file: the dashboard
        shows the store the runner writes); "" = SQLite in the data directory. A `--db` option comes
        before all of them and is the caller's."""
        own = bool(self.db_url_file or self.db_url)
        source = RunnerConfig(db_url=self.db_url, db_url_file=self.db_url_file) if own or runner is None else runner
        try:
            return resolve_db_url(source, environ)
        except ConfigError as exc:
            if not own:
                raise
            # resolve_db_url names the runner's setting; this file was the dashboard's.
            raise ConfigError(str(exc).replace("runner.db_url_file", "dashboard.db_url_file", 1)) from exc


@dataclass
class TeachConfig:
    """Learning from operators' dismissals (`inspector learn`, inspector/review/teach.py): how far a
    dismissed false alarm may widen the per-position tolerance, and what is refused as a lesson."""

    # At a dismissed region's pixels the tolerance becomes what the region showed over the region line
    # times (1 + margin): the same false alarm seen a little stronger next time stays silent.
    margin: float = 0.25
    # ...and within this many working-resolution pixels around them (a glint or a leaning part lands a
    # few pixels apart on the next board; alignment leaves a pixel or two). 10 rather than 6: on the
    # webcam-like boards a glint wanders further, and recall did not move (docs/results.md, issue 34).
    spread_px: int = 10
    # Never more than this multiple of the bundle's own tolerance anywhere: a region far above the line
    # is not silenced by teaching (it still needs a person, or a retrained model).
    ceiling: float = 4.0
    # A dismissed region larger than this share of the inspected board is not a place but a set-up
    # problem (light, focus, fixture): refused as a lesson, with that said.
    max_region_share: float = 0.02
    # Before a version is applied it is tried on the last this-many stored boards: false regions it
    # removes, and confirmed defects it would have missed (any: refused).
    preview_boards: int = 200

    def __post_init__(self) -> None:
        if not (0.0 <= self.margin <= 2.0 and 0 <= self.spread_px <= 64 and 1.0 < self.ceiling <= 100.0
                and 0.0 < self.max_region_share <= 1.0 and self.preview_boards >= 0):
            raise ConfigError(f"teach settings out of range: margin [0, 2], spread_px [0, 64], ceiling (1, 100], "
                              f"max_region_share (0, 1], preview_boards >= 0; got {self}")


MQTT_SCHEMES = ("mqtt", "mqtts")
OPCUA_SECURITY = ("none", "sign", "sign_and_encrypt")


@dataclass
class MqttConfig:
    """`[lineout.mqtt]`: verdicts to an MES or SCADA over MQTT (QoS 1, at least once). Off while `url` is ""."""

    url: str = ""  # mqtt://host:1883 or mqtts://host:8883 (TLS)
    topic_prefix: str = "board-inspector"  # <prefix>/<station>/verdict, /status, /trigger
    username: str = ""
    password_file: str = ""  # a file (mode 0600) holding the password: never in argv or this file
    client_id: str = ""  # "" = board-inspector-<station>
    ca_file: str = ""  # TLS: the broker's CA (default: the system's)
    cert_file: str = ""  # TLS client certificate (optional)
    key_file: str = ""
    keepalive_seconds: int = 30
    ack_timeout_seconds: float = 5.0  # no PUBACK within this: the verdict stays pending and is sent again
    triggers: bool = False  # the camera feed takes triggers (with a part id) from <prefix>/<station>/trigger

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def __post_init__(self) -> None:
        if self.url and self.url.split("://", 1)[0] not in MQTT_SCHEMES:
            raise ConfigError(f"lineout.mqtt.url must start with mqtt:// or mqtts://, got {self.url!r}")
        if self.ack_timeout_seconds <= 0 or self.keepalive_seconds < 5:
            raise ConfigError("lineout.mqtt: ack_timeout_seconds must be > 0 and keepalive_seconds >= 5")


@dataclass
class OpcuaConfig:
    """`[lineout.opcua]`: a station's OPC UA server (OPC 40100-1 Machine Vision where it applies, plus plain
    variables and a ResultReady / ResultAck handshake for PLCs). Off while `endpoint` is ""."""

    endpoint: str = ""  # opc.tcp://0.0.0.0:4840/board-inspector
    security: str = "sign_and_encrypt"  # none (anonymous: only when bound to localhost), sign, sign_and_encrypt
    certificate_file: str = ""  # the server's certificate and key (DER or PEM), required unless security = none
    private_key_file: str = ""
    trusted_clients_dir: str = ""  # client certificates allowed to connect (all others refused)
    ack_timeout_seconds: float = 10.0  # the PLC must write ResultAck within this: else an error, verdict kept
    triggers: bool = False  # the camera feed takes triggers from the Trigger(partId) method

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)

    def __post_init__(self) -> None:
        if self.endpoint and not self.endpoint.startswith("opc.tcp://"):
            raise ConfigError(f"lineout.opcua.endpoint must start with opc.tcp://, got {self.endpoint!r}")
        one_of("lineout.opcua.security", self.security, OPCUA_SECURITY)
        if self.ack_timeout_seconds <= 0:
            raise ConfigError("lineout.opcua.ack_timeout_seconds must be > 0")
        if self.endpoint and self.security != "none" and not self.trusted_clients_dir:
            # An empty trust list would let any client with a valid certificate in: name the PLCs instead.
            raise ConfigError("lineout.opcua.trusted_clients_dir is required with security sign / sign_and_encrypt: "
                              "the folder of the client certificates (or their CAs) to let in")


@dataclass
class LineoutConfig:
    """Where verdicts go besides stdout and the hook (`[lineout.*]`), read by `watch` and `camera`."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    opcua: OpcuaConfig = field(default_factory=OpcuaConfig)


@dataclass
class Settings:
    """A whole deployment's settings (the example config in deploy/ mirrors this)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    inspect: InspectConfig = field(default_factory=InspectConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    teach: TeachConfig = field(default_factory=TeachConfig)
    lineout: LineoutConfig = field(default_factory=LineoutConfig)
