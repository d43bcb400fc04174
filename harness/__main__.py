"""``python -m harness``: the same command line as ``hessdiff``."""

from harness.cli import main

raise SystemExit(main())
