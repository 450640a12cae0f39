"""Task registry. Each task lives in one file; importing it registers it."""

from w2s.tasks.base import TASKS, Task, get_task, make_task, register_task, task_names  # noqa: F401
from w2s.tasks import gsm8k, math, custom, toy  # noqa: F401,E402  (registration side effects)

__all__ = ["TASKS", "Task", "get_task", "make_task", "register_task", "task_names"]
