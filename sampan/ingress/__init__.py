"""The ingress controller: ``networking.k8s.io/v1`` Ingresses and TCP services served by an
HTTP(S) reverse proxy that routes straight to endpoints, as ingress-nginx does."""

from sampan.ingress.config import CONTROLLER_NAME, RoutingTable, build_table
from sampan.ingress.proxy import IngressProxy

__all__ = ["CONTROLLER_NAME", "IngressProxy", "RoutingTable", "build_table"]
