"""The dashboard part's entry point (`board_inspector.extensions` = dashboard): see inspector/extensions.py."""

from __future__ import annotations

from pathlib import Path

from inspector.config import DashboardConfig

DEMO_USERS = Path(__file__).resolve().parent / "demo-users.toml"


class Dashboard:
    """Launching the Streamlit dashboard, offered to the runtime's CLI and demo."""

    def launch(self, config: DashboardConfig, data_dir: Path) -> None:
        from deploy.dashboard.launch import launch

        launch(config, data_dir)

    def demo_users_file(self) -> Path:
        return DEMO_USERS


EXTENSION = Dashboard()
