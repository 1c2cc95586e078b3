"""Model-zoo runs: many models checked in parallel, resumable, cached, locally or on Ray (docs/zoo.md).

Modules: ``config`` (the zoo file), ``job`` (one model's check, in its own process), ``cache`` (the
conversion cache), ``process`` (one job's process: timeout, memory cap), ``runner`` (scheduling,
status file, progress), ``executors`` (local processes or Ray tasks), ``scorecard`` and ``timing``
(latency measured while every other model of the run is paused). This package imports nothing heavy:
``timing`` is used inside every validation.
"""
