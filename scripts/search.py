#!/usr/bin/env python
"""Entry point of `ray submit CLUSTER.yaml scripts/search.py -- ARGS`: the same options as `spinenas search`.

Run on the cluster's head node, it connects to that cluster (address 'auto') unless --address is given:

    ray up scripts/cluster/aws-gpu.yaml
    ray submit scripts/cluster/aws-gpu.yaml scripts/search.py -- --preset paper --name coco-1 \
        --set proxy.data.path=/data/coco-proxy
    ray down scripts/cluster/aws-gpu.yaml
"""

from __future__ import annotations

import sys

from nas.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not any(a == "--address" or a.startswith("--address=") for a in argv):
        argv = [*argv, "--address", "auto"]
    sys.exit(main(["search", *argv]))
