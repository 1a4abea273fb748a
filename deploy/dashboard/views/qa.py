"""Page script run by st.navigation (a file, so tests can switch to it); the page lives in qa_page.py."""

from deploy.dashboard.context import settings_from_env
from deploy.dashboard.qa_page import qa_page

qa_page(settings_from_env())
