"""The lab: the Kubernetes API stand-in, network-namespace topologies, lab routers (BIRD, FRR) and
the stories and chaos soak played against real agents. Used by the tests, the benches and `kvip lab`.
"""
