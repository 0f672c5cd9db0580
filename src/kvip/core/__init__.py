"""The pure core: what kvip decides, with no I/O, no clock and no asyncio.

Owns the domain values (`model`), `decide()` (cluster snapshot + node + leadership → the VIPs a node
advertises), VIP and annotation parsing (`vips`, `bgp_attributes`), the IPAM plan of the controller
(`ipam`) and the time-based rules that other layers apply with their own clock (`election_rules`).
Everything here is tested with plain values and hypothesis; nothing here imports another kvip layer.
"""
