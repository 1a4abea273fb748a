"""All settings of the product, typed, with defaults that work; `from inspector.config import X` is the API.

Each dataclass belongs to one part of the product; a TOML or JSON file can override any field
(`load_config`). `training` holds `inspector train`'s settings (torch-free, so that a bundle's
config.json can be read on a line PC), `line` the line's, `files` the reading of files, `secrets`
the masking of passwords and where the store's URL comes from, `modes` the values a mode may take.
"""

from inspector.config.files import from_dict, load_config, load_settings
from inspector.config.line import (
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
from inspector.config.modes import INT8_SCHEMES, LOSSES, MAX_REGION_MERGE_PX, PRECISIONS, ViewKind
from inspector.config.secrets import DB_URL_ENV, has_secret, mask_secrets, resolve_db_url
from inspector.config.training import (
    CalibrationSettings,
    ExportSettings,
    RegistrationSettings,
    ScheduleSettings,
    TrainConfig,
)

__all__ = [
    "DB_URL_ENV", "INT8_SCHEMES", "LOSSES", "MAX_REGION_MERGE_PX", "PRECISIONS", "CalibrationSettings",
    "CameraConfig", "DashboardConfig", "ExportSettings", "InspectConfig", "LineoutConfig", "MqttConfig",
    "OpcuaConfig", "RegistrationSettings", "RunnerConfig", "ScheduleSettings", "Settings", "TeachConfig",
    "TrainConfig", "ViewKind", "from_dict", "has_secret", "load_config", "load_settings", "mask_secrets",
    "resolve_db_url",
]
