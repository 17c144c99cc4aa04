"""`celery -A tests.toy_worker worker`: the stock task bodies plus the toy one."""

from __future__ import annotations

from service.core.settings import Settings
from tests.toy_task import Echo, echo
from workers.app import create_worker_app
from workers.tasks import BODIES

app = create_worker_app(Settings.from_env(), bodies={**BODIES, Echo: echo})
