"""Local mode: the whole pipeline on an embedded AWS emulator (moto) on loopback.

Everything that bridges the emulator's gaps lives here, never in the operators.
"""
