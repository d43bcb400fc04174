"""``python -m hessdiff``: the same command line as ``hessdiff``."""

from hessdiff.harness.cli import main

raise SystemExit(main())
