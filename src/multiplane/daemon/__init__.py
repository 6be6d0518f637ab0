"""The node daemon: the CNI engine served on a unix socket, with watch caches, health and metrics."""
