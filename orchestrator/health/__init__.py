"""Health checks (http, tcp, command and systemd through a guest channel)."""

from orchestrator.health.checks import HealthTarget, applies, run_check, run_checks, wait_healthy
from orchestrator.model import CheckResult, HealthReport

__all__ = [
    "CheckResult",
    "HealthReport",
    "HealthTarget",
    "applies",
    "run_check",
    "run_checks",
    "wait_healthy",
]
