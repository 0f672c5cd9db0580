"""The API resources kvip reads, as lightkube *generic* (dict-backed) resource classes.

Why not lightkube's typed models: kvip converts every object into its own frozen views
(`kvip.kube.convert`) anyway, and a dict-backed resource decodes a list of 30,000 EndpointSlices
straight from JSON without building a typed tree first. The classes are registered under
lightkube's generic registry (apiVersion "/v1" for the core group), so they never clash with the
typed `lightkube.resources` models that other code may use.
"""

from __future__ import annotations

from lightkube.generic_resource import (
    create_global_resource,
    create_namespaced_resource,
)

Service = create_namespaced_resource("", "v1", "Service", "services")
EndpointSlice = create_namespaced_resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")
Node = create_global_resource("", "v1", "Node", "nodes")
Lease = create_namespaced_resource("coordination.k8s.io", "v1", "Lease", "leases")
Event = create_namespaced_resource("", "v1", "Event", "events")
ConfigMap = create_namespaced_resource("", "v1", "ConfigMap", "configmaps")

__all__ = ["ConfigMap", "EndpointSlice", "Event", "Lease", "Node", "Service"]
