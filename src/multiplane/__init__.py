"""multiplane: a CNI meta-plugin with built-in macvlan and host-local. Importing has no side effects."""

__version__ = "0.1.0"
