"""Two-stage training (PAPER_SPEC §3-5): stages, mining, multipliers, optimiser, backups, the trainer.

Imports nothing itself: import the module you need (``from dpcnn.training.trainer import train``).
"""
