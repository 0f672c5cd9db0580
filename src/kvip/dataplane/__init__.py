"""Dataplane adapters: the kernel routing table, layer-2 addresses with ARP/NDP, and the BGP speaker.

Each backend implements the one interface in `base` (desired items from a `DesiredState`, what the
dataplane really holds of ours, add/remove, change hints). Backends never import `kvip.kube`, and
own only what carries kvip's mark (route protocol, IFA_PROTO, BIRD instance).
"""
