"""The streamflow dashboard: every queue in a browser (``pip install streamflow[dashboard]``).

``streamflow dashboard`` serves it; ``create_app`` returns the ASGI app to mount in a service.
"""

from __future__ import annotations

from .app import create_app
from .config import DEFAULT_SENSITIVE, DashboardConfig

__all__ = ["DEFAULT_SENSITIVE", "DashboardConfig", "create_app"]
