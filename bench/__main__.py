"""`python -m bench`: run every benchmark and print one table."""

from __future__ import annotations

import asyncio

from bench.pipeline import main

asyncio.run(main())
