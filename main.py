"""MMRec's entry point: ``python main.py -m FREEDOM -d baby [--motor] [--key=value ...]``.

The same as ``mmrec-motor run ...``.
"""
import sys

from mmrec_motor.cli import main

if __name__ == "__main__":
    sys.exit(main(["run"] + sys.argv[1:]))
