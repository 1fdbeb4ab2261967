"""Every benchmark in one go (``make bench``): the normaliser (pure CPU) and the bridge (on the
local stack). Each prints its own ratio against its baseline, the median of several runs."""

from __future__ import annotations

import subprocess
import sys


def main() -> int:
    for module in ("bench.normaliser", "bench.bridge"):
        result = subprocess.run([sys.executable, "-m", module, *sys.argv[1:]], check=False)
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
