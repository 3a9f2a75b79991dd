"""The training engine: one run end to end (`trainer`), its phases (`phases`), the callbacks
that checkpoint and stop it (`callbacks`), the resume record (`resume_record`), and where it
trains: devices (`distribute`) and several processes (`cluster`).

Importing this package imports nothing heavy; its modules import Keras where they need it.
"""
