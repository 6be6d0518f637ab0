"""The multiplane runtime tree: its on-disk format, and laying it down on a node (no CNI code here)."""
