"""The dashboard part's entry point (`board_inspector.extensions` = dashboard): see inspector/extensions.py."""

from __future__ import annotations

from pathlib import Path

from inspector.config import DashboardConfig


class Dashboard:
    """Launching the Streamlit dashboard and managing its logins, offered to the runtime's CLI and demo."""

    def launch(self, config: DashboardConfig, data_dir: Path, *, demo: bool = False) -> None:
        from deploy.dashboard.launch import launch

        launch(config, data_dir, demo=demo)

    def demo_users_file(self, folder: Path) -> Path:
        """Write the published demo logins into `folder` (the demo's work folder) and return the file.

        No demo users file ships with the package or the container image: the demo makes one."""
        from deploy.dashboard.auth import DEMO_PASSWORDS, UsersFile, hash_password, write_users

        path = Path(folder) / "demo-users.toml"
        if not path.is_file():
            Path(folder).mkdir(parents=True, exist_ok=True)
            write_users(UsersFile(path=path, hashes={n: hash_password(p) for n, p in DEMO_PASSWORDS.items()},
                                  roles={"operator": "operator", "qa": "qa"}))
        return path

    def manage_users(self, action: str, users_file: Path, name: str | None = None, *, role: str | None = None,
                     password_stdin: bool = False) -> str:
        from deploy.dashboard.users_cmd import manage

        return manage(action, users_file, name, role=role, password_stdin=password_stdin)


EXTENSION = Dashboard()
