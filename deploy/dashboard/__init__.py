"""The Streamlit dashboard: operator queue, board review, line overview, QA thresholds."""
