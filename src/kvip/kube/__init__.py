"""Kubernetes adapters: the API client, reflectors and the cluster cache, Lease election, and the
writers of Service status, Events and the per-node heartbeat Lease.

Owns everything that talks to the API server; converts API JSON into `kvip.core.model` views at the
edge. Never imports `kvip.dataplane`.
"""
