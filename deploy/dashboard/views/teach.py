"""Page script run by st.navigation (a file, so tests can switch to it); the page lives in teach_page.py."""

from deploy.dashboard.context import settings_from_env
from deploy.dashboard.teach_page import teach_page

teach_page(settings_from_env())
