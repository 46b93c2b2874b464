"""Runnable examples of streamflow in web frameworks (not part of the published package)."""
