"""The scheduler (upstream ``pkg/scheduler``): a framework of plugins with upstream's names
(queue sort, pre-filter, filter, post-filter, score, reserve, permit, pre-bind, bind), a cache
of nodes and pods from informers with per-node numpy arrays for the hot plugins, and a
scheduling queue with backoff and unschedulable pods.

Public entry points (stable; the hollow-node benchmark and the CLI drive them):

- ``run_scheduler(kubeconfig_path, stop_event, *, identity=None, leader_election=True,
  profiles=None)`` — the ``sampan scheduler`` component: leader election on the Lease
  ``kube-system/kube-scheduler``, then schedule until ``stop_event`` is set.
- ``Scheduler(client, informers=None, *, profiles=None, recorder=None, seed=None)`` — usable
  in-process: ``await scheduler.run()`` (starts its own informers) until cancelled.
  ``scheduler.scheduled`` counts bound pods.
- ``Profile(scheduler_name, plugins=None, plugin_args={}, percentage_of_nodes_to_score=0)`` —
  one profile per ``spec.schedulerName``; ``plugins`` defaults to ``default_plugins()``.
"""

from sampan.scheduler.framework import (DEFAULT_SCHEDULER_NAME, Code, CycleState, FitError,
                                        Framework, PluginSpec, Status, fit_error_message)
from sampan.scheduler.plugins import DEFAULT_PLUGINS, IN_TREE, default_plugins
from sampan.scheduler.scheduler import (Profile, Scheduler, SchedulerComponent,
                                        run_scheduler)

__all__ = ["Code", "CycleState", "DEFAULT_PLUGINS", "DEFAULT_SCHEDULER_NAME", "FitError",
           "Framework", "IN_TREE", "PluginSpec", "Profile", "Scheduler", "SchedulerComponent",
           "Status", "default_plugins", "fit_error_message", "run_scheduler"]
