"""kvip: a level-triggered, Kube-VIP-compatible Service load-balancer agent."""

__version__ = "0.1.0"
