"""A Django project whose sync view adds jobs through `SyncQueue`."""
