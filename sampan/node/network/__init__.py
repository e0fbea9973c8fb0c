"""The pod network: a Linux bridge per node, veths into pinned pod namespaces, host-local IPAM,
routes to other nodes' pod CIDRs, masquerade and hostPort DNAT (nftables)."""

from sampan.node.network.bridge import RTPROT_SAMPAN, BridgeNetwork, NetworkError
from sampan.node.network.ipam import HostLocalIPAM, HostLocalRange, IPAMError
from sampan.node.network.names import mac_for_ip, veth_name

__all__ = ["RTPROT_SAMPAN", "BridgeNetwork", "HostLocalIPAM", "HostLocalRange", "IPAMError",
           "NetworkError", "mac_for_ip", "veth_name"]
