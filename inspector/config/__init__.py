"""All settings of the product, typed, with defaults that work; `from inspector.config import X` is the API.

Each dataclass belongs to one part of the product; a TOML or JSON file can override any field
(`load_config`). `training` holds `inspector train`'s settings (torch-free, so that a bundle's
config.json can be read on a line PC), `line` the line's, `files` the reading of files, `secrets`
the masking of passwords and where the store's URL comes from, `modes` the values a mode may take.
"""

from inspector.config.files import from_dict, load_config, load_settings
from inspector.config.line import (
    MQTT_SCHEMES,
    OPCUA_SECURITY,
    CameraConfig,
    DashboardConfig,
    InspectConfig,
    LineoutConfig,
    MqttConfig,
    OpcuaConfig,
    RunnerConfig,
    Settings,
    TeachConfig,
)
from inspector.config.modes import (
    CHANNEL_ERRORS,
    CHANNELS,
    DEVICES,
    GRAPH_OPTIMIZATIONS,
    INT8_SCHEMES,
    LOSSES,
    MAX_REGION_MERGE_PX,
    METHODS,
    PRECISIONS,
    PROVIDERS,
    SWITCHES,
    VIEW_COUNTS,
    VIEW_KINDS,
    ChannelError,
    Channels,
    Device,
    GraphOptimization,
    Int8Scheme,
    Loss,
    Method,
    Precision,
    Providers,
    Switch,
    ViewKind,
)
from inspector.config.secrets import DB_URL_ENV, has_secret, mask_secrets, resolve_db_url
from inspector.config.training import (
    CalibrationSettings,
    ExportSettings,
    RegistrationSettings,
    ScheduleSettings,
    TrainConfig,
)

__all__ = [
    "CHANNELS", "CHANNEL_ERRORS", "DB_URL_ENV", "DEVICES", "GRAPH_OPTIMIZATIONS", "INT8_SCHEMES", "LOSSES",
    "MAX_REGION_MERGE_PX", "METHODS", "MQTT_SCHEMES", "OPCUA_SECURITY", "PRECISIONS", "PROVIDERS", "SWITCHES",
    "VIEW_COUNTS", "VIEW_KINDS", "CalibrationSettings", "CameraConfig", "ChannelError", "Channels",
    "DashboardConfig", "Device", "ExportSettings", "GraphOptimization", "InspectConfig", "Int8Scheme",
    "LineoutConfig", "Loss", "Method", "MqttConfig", "OpcuaConfig", "Precision", "Providers",
    "RegistrationSettings", "RunnerConfig", "ScheduleSettings", "Settings", "Switch", "TeachConfig",
    "TrainConfig", "ViewKind", "from_dict", "has_secret", "load_config", "load_settings", "mask_secrets",
    "resolve_db_url",
]
