"""Child process for the outbox SIGKILL tests (run as a script).

usage: outbox_child.py DIR loop SIZE
           add pages of SIZE random bytes forever, printing "ADDED <seq> <uuid> <sm3>"
           after each add() returned
       outbox_child.py DIR phase:<name> SIZE
           add two pages normally, then freeze at <name> inside the third add() (or, for
           ack_* phases, inside ack() of the first page), printing "FROZEN <name>"
"""

from __future__ import annotations

import os
import sys
import time

from scanner_agent.outbox import Outbox


def main() -> None:
    root, mode, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    box = Outbox(root)
    print("READY", flush=True)
    if mode == "loop":
        n = 0
        while True:
            page = box.add("job-1", "ZC-LOOP", "id_copy", n, os.urandom(size), {"n": n})
            print(f"ADDED {page.sequence} {page.page_uuid} {page.sm3}", flush=True)
            n += 1
    phase = mode.split(":", 1)[1]
    first = None
    for n in range(2):
        page = box.add("job-1", "ZC-PHASE", "invoice", n, os.urandom(size), {"n": n})
        first = first or page
        print(f"ADDED {page.sequence} {page.page_uuid} {page.sm3}", flush=True)

    def freeze(name: str) -> None:
        if name == phase:
            print(f"FROZEN {name}", flush=True)
            time.sleep(600)

    box._crash_hook = freeze
    if phase.startswith("ack"):
        box.ack(first.sequence)
    else:
        box.add("job-1", "ZC-PHASE", "invoice", 2, os.urandom(size), {"n": 2})
    print("NOT FROZEN", flush=True)


if __name__ == "__main__":
    main()
