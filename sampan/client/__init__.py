"""The Kubernetes client every Sampan component uses: REST, discovery, informers, work queues,
leader election, controllers and events."""

from sampan.client.config import Config, ConfigError, in_cluster_config, load_config, load_kubeconfig
from sampan.client.controller import Controller, Requeue, run_worker, run_workers, wait_for_cache_sync
from sampan.client.discovery import APIResource, Discovery, DiscoveryFailedError, UnknownKindError
from sampan.client.errors import ApiError, ResourceExpiredError
from sampan.client.events import NORMAL, WARNING, EventRecorder
from sampan.client.informer import (
    NAMESPACE_INDEX,
    OWNER_UID_INDEX,
    Indexer,
    InformerFactory,
    SharedInformer,
    index_by_owner_uid,
    object_key,
    split_key,
    strip_managed_fields,
)
from sampan.client.leaderelection import LeaderElectionConfig, LeaderElector
from sampan.client.rest import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    Client,
    Preconditions,
    Watch,
    WatchEvent,
    resource_path,
    retry_on_conflict,
)
from sampan.client.workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)

__all__ = [
    "APIResource", "APPLY_PATCH", "ApiError", "BucketRateLimiter", "Client", "Config",
    "ConfigError", "Controller", "Discovery", "DiscoveryFailedError", "EventRecorder",
    "Indexer", "InformerFactory", "ItemExponentialFailureRateLimiter", "JSON_PATCH",
    "LeaderElectionConfig", "LeaderElector", "MERGE_PATCH", "MaxOfRateLimiter", "NAMESPACE_INDEX",
    "NORMAL", "OWNER_UID_INDEX", "Preconditions", "RateLimitingQueue", "Requeue", "ResourceExpiredError",
    "STRATEGIC_MERGE_PATCH", "SharedInformer", "ShutDown", "UnknownKindError", "WARNING", "Watch",
    "WatchEvent", "WorkQueue", "default_controller_rate_limiter", "in_cluster_config",
    "index_by_owner_uid", "load_config", "load_kubeconfig", "object_key", "resource_path",
    "retry_on_conflict", "run_worker", "run_workers", "split_key", "strip_managed_fields", "wait_for_cache_sync",
]
