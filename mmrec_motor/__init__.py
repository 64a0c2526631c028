"""mmrec-motor: MOTOR, an ID-free item representation, for MMRec backbones.

Layers (each a package or module with one job):
    config        yaml layering and command-line overrides (MMRec's precedence)
    data/         .inter and feature loading with validation, BPR sampler, the toy dataset
    evaluation    full-sort top-K evaluation with MMRec's metric definitions
    models/       the backbones, one file each
    trainer       the training loop, early stopping, checkpoints
    quick_start   grid search over hyper-parameters, result files
    motor/        MOTOR itself; imports nothing from the layers above
"""
__version__ = "0.1.0"
