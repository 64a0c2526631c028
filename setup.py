"""Packaging for mmrec-motor.

The yaml configs live in the top-level ``configs/`` folder of the source tree and are shipped inside the
wheel as the package ``mmrec_motor.configs``; ``mmrec_motor.config.CONFIG_ROOT`` finds them either way.
The MMRec patch series in ``patches/`` is shipped the same way as ``mmrec_motor.patches``
(``mmrec_motor.upstream`` finds it either way).
"""
from setuptools import setup

CONFIG_GLOBS = ["*.yaml", "model/*.yaml", "dataset/*.yaml"]
PATCH_GLOBS = ["series", "*.patch", "README.md"]

setup(
    name="mmrec-motor",
    version="0.1.0",
    description="MOTOR (ID-free item representation by token crossing) for MMRec backbones, "
                "with an MMRec-compatible runtime",
    python_requires=">=3.9",
    packages=["mmrec_motor", "mmrec_motor.motor", "mmrec_motor.models", "mmrec_motor.data", "mmrec_motor.experiments",
              "mmrec_motor.configs", "mmrec_motor.patches"],
    package_dir={"mmrec_motor.configs": "configs", "mmrec_motor.patches": "patches"},
    package_data={"mmrec_motor.configs": CONFIG_GLOBS, "mmrec_motor.patches": PATCH_GLOBS},
    install_requires=[
        "torch>=2.0",
        "numpy>=1.23",
        "scipy>=1.9",
        "pandas>=1.5",
        "pyyaml>=6.0",
        "lmdb>=1.4",
        "faiss-cpu>=1.7.4",
    ],
    extras_require={
        "gpu": ["faiss-gpu>=1.7.2"],
        "dev": ["pytest>=7", "build"],
        "plot": ["matplotlib>=3.5"],
    },
    entry_points={"console_scripts": ["mmrec-motor=mmrec_motor.cli:main"]},
)
