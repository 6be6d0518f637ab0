"""Cluster-wide IPAM (issue 13): one address range shared by every node, blocks claimed in a shared store."""
