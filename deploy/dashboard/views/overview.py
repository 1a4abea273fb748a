"""Page script run by st.navigation (a file, so tests can switch to it); the page lives in overview_page.py."""

from deploy.dashboard.context import settings_from_env
from deploy.dashboard.overview_page import overview_page

overview_page(settings_from_env())
