"""Stand-in for a Jetson's ``tegrastats``: replays real tegrastats lines (../shared/fixtures) at --interval.

The file to replay is named in ``tegrastats_source`` beside it.  Runs until
terminated, as the real tool does.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    interval = int(argv[argv.index("--interval") + 1]) if "--interval" in argv else 1000
    with open(os.path.join(HERE, "tegrastats_source")) as f:
        src = f.read().strip()
    with open(src) as f:
        lines = [ln.rstrip("\n") for ln in f if "RAM " in ln]
    i = 0
    while True:
        time.sleep(interval / 1000.0)
        sys.stdout.write(lines[i % len(lines)] + "\n")
        sys.stdout.flush()
        i += 1


if __name__ == "__main__":
    main(sys.argv[1:])
