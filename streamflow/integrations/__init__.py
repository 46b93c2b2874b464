"""Plugging streamflow into web frameworks and synchronous code.

- `streamflow.integrations.starlette`: a lifespan that opens one `Queue` for a Starlette or
  FastAPI app and closes it at shutdown, and `get_queue` to reach it from a request.
- `streamflow.integrations.sync`: `SyncQueue`, a blocking producer for synchronous code
  (Django views, Flask, scripts) that keeps one connection pool per process.
"""
