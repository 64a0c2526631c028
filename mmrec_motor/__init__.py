"""mmrec-motor: MOTOR, an ID-free item representation, for MMRec backbones.

Layers (each a package or module with one job; docs/architecture.md is the code map):
    keys, config  what each key may hold; yaml layering and command-line overrides (MMRec's precedence)
    data/         .inter and feature loading with validation, BPR sampler, the toy dataset, cold items
    models/       the backbones, one file each
    evaluation    full-sort top-K evaluation with MMRec's metric definitions
    trainer       the training loop, early stopping, checkpoints
    quick_start   grid search over hyper-parameters, result files; load_run
    preflight     before training: the outputs can be written
    threads       the thread count of a run on a shared machine
    fileio        atomic file writes, checkpoint checksums and the top-K format
    logs, progress  the run log (what stdout shows); the lines a person reads
    experiments/  bench and the analyses: run plans, the run store, one runner, reports
    motor/        MOTOR itself; imports nothing from the layers above
"""
__version__ = "0.1.0"
