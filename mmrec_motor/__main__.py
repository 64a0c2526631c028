"""``python -m mmrec_motor`` is the ``mmrec-motor`` console script."""
from mmrec_motor.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
