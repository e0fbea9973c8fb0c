"""The Deployment controller: rolling updates, Recreate, pause, history and rollback over
ReplicaSets."""

from sampan.controllers.deployment.controller import DeploymentController

__all__ = ["DeploymentController"]
