"""mmrec-motor: MOTOR, an ID-free item representation, for MMRec backbones.

Layers (each a package or module with one job; docs/architecture.md is the code map):
    keys, config  what each key may hold; yaml layering and command-line overrides (MMRec's precedence)
    data/         .inter and feature loading with validation, BPR sampler, the toy dataset, cold items
    models/       the backbones, one file each
    evaluation    full-sort top-K evaluation with MMRec's metric definitions
    trainer       the training loop, early stopping, checkpoints
    quick_start   grid search over hyper-parameters, result files; load_run
    fileio, logs  atomic file writes and the top-K format; the run log
    experiments/  bench and the analyses: run plans, the run store, one runner, reports
    motor/        MOTOR itself; imports nothing from the layers above
"""
__version__ = "0.1.0"
