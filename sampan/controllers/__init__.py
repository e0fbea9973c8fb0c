"""Controllers: level-triggered reconcile loops run by the controller manager."""

from sampan.controllers.garbagecollector import GarbageCollector
from sampan.controllers.manager import (
    DEFAULT_CONTROLLERS,
    ControllerManager,
    run_controller_manager,
)
from sampan.controllers.namespace import NamespaceController

__all__ = ["DEFAULT_CONTROLLERS", "ControllerManager", "GarbageCollector", "NamespaceController",
           "run_controller_manager"]
