"""``python -m hessdiff.harness``: the same command line as ``hessdiff`` (``python -m hessdiff``)."""

from hessdiff.harness.cli import main

raise SystemExit(main())
