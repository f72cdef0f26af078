"""``python -m mmdbg``: the same as the ``mmdbg`` console script."""

from __future__ import annotations

from mmdbg.cli import main

raise SystemExit(main())
