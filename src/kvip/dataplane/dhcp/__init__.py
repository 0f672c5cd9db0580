"""DHCP-assigned Service addresses, the I/O half: one macvlan per Service (`macvlan`) and a DHCP client
on it (`client`) driving the pure state machine of `kvip.core.dhcp_lease` with real sockets and clocks."""
