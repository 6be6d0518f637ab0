"""PyInstaller entry point: the same `multiplane.cli.main` the Python package installs."""

from multiplane.cli import main

raise SystemExit(main())
