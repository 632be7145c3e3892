"""``python -m benchmarks``: the CPU suite (see benchmarks/run.py)."""

from benchmarks.run import main

raise SystemExit(main())
