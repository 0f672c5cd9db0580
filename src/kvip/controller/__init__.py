"""The cluster-level LoadBalancer IP allocator (`kvip controller`): a leader-elected loop that reads
kube-vip-cloud-provider's `kubevip` ConfigMap and writes addresses into Services. The plan itself is
pure (`kvip.core.ipam`); this package owns only its wiring to the API.
"""
