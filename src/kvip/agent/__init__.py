"""The per-node agent: wiring of config → cache → decide → reconciler → dataplane backends.

Owns the agent's tasks and their lifetimes, its HTTP endpoint (health, metrics, status), its
Prometheus metrics and the local endpoint probes. It decides nothing itself: every decision is a
`kvip.core` function fed with what the adapters (`kvip.kube`, `kvip.dataplane`) report.
"""
