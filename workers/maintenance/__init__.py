"""Housekeeping task bodies: the weekly cleanup and the scheduler probe."""

from workers.maintenance.cleanup import cleanup
from workers.maintenance.probe import scheduler_probe

__all__ = ["cleanup", "scheduler_probe"]
