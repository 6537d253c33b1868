"""Entry point of the pool supervisor (``python -m kernelagent.sandbox.pool_start SPEC_JSON``).

It detaches first and imports the sandbox stack (docker, jupyter_client) afterwards, so
the process that starts the pool waits for a fork, not for a second of imports.
"""

from __future__ import annotations

import sys

from kernelagent.machine_files import detach


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m kernelagent.sandbox.pool_start SPEC_JSON", file=sys.stderr)
        return 2
    detach()
    from kernelagent.sandbox.pool_supervisor import run_supervisor  # after the fork, see above

    return run_supervisor(argv[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
