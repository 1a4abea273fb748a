"""The dashboard server: Streamlit's app (app.py) plus the login routes and page gate of web.py.

`inspector dashboard` runs `streamlit run` on this file; Streamlit finds the `st.App` below and
serves app.py through it, in one process, so the login routes and the pages share the session
table (sessions.py).
"""

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from deploy.dashboard.web import LoginGate, routes

app = st.App(Path(__file__).resolve().with_name("app.py"), routes=routes(), middleware=[Middleware(LoginGate)])
