"""The meta-plugin: network selection, delegate resolution and running, cache, network-status."""
