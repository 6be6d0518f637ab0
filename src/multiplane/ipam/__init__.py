"""host-local IPAM as a library: ranges, allocation policy, configuration, on-disk store."""
