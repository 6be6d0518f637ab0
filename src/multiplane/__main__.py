"""`python -m multiplane` runs the same entry point as the installed binary."""

from multiplane.cli import main

raise SystemExit(main())
