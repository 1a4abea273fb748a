"""Review and teaching: operators' decisions on flagged boards (the dashboard's and `inspector review`'s
one implementation, behind the role checks) and QA teaching the station from dismissed false alarms."""
