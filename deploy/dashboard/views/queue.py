"""Page script run by st.navigation (a file, so tests can switch to it); the page lives in queue_page.py."""

from deploy.dashboard.context import settings_from_env
from deploy.dashboard.queue_page import queue_page

queue_page(settings_from_env())
