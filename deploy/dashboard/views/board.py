"""Page script run by st.navigation (a file, so tests can switch to it); the page lives in board_page.py."""

from deploy.dashboard.board_page import board_page
from deploy.dashboard.context import settings_from_env

board_page(settings_from_env())
