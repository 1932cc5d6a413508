"""The health rules, when engine.health is installed: the one guarded import.

The rules live in engine.health (another part of the project); the app
shows "health rules not available" where it is absent.
"""

from __future__ import annotations

try:
    from engine.health import RULES, HealthMonitor
except ImportError:  # the rules module is not part of this build
    RULES = ()
    HealthMonitor = None

AVAILABLE = HealthMonitor is not None
UNAVAILABLE_TEXT = "health rules not available"
