"""streamflow: a job and event pipeline on Redis Streams consumer groups."""

from __future__ import annotations

from .backoff import Backoff as Backoff
from .browse import JobPage as JobPage
from .browse import JobView as JobView
from .errors import Discard as Discard
from .errors import RateLimited as RateLimited
from .errors import Retry as Retry
from .errors import StreamflowError as StreamflowError
from .events import QueueEvents as QueueEvents
from .job import Job as Job
from .job import JobOptions as JobOptions
from .job import JobState as JobState
from .job import Priority as Priority
from .queue import JobSpec as JobSpec
from .queue import Queue as Queue
from .router import Router as Router
from .settings import StreamflowSettings as StreamflowSettings
from .worker import Worker as Worker

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Discard",
    "Job",
    "JobOptions",
    "JobPage",
    "JobSpec",
    "JobState",
    "JobView",
    "Priority",
    "Queue",
    "QueueEvents",
    "RateLimited",
    "Retry",
    "Router",
    "StreamflowError",
    "StreamflowSettings",
    "Worker",
    "__version__",
]
