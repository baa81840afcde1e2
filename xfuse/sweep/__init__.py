"""Grids of layer combinations and their execution: a plan, then its tasks locally or as SLURM arrays.

Reads a JSON spec and a features store; writes ``plan.json``, ``results/<task>/``
(one :mod:`xfuse.heads` result per task), ``failed/`` and ``timings.json``.
May import :mod:`xfuse.heads`, :mod:`xfuse.calibration` and :mod:`xfuse.features`.

Entry points: :func:`~xfuse.sweep.plan.make_plan`, :func:`~xfuse.sweep.plan.run_local`,
:func:`~xfuse.sweep.plan.sweep_status` (``xfuse sweep plan|submit|status``) and
:func:`~xfuse.sweep.slurm.submit_slurm` (the sbatch scripts are rendered by pure functions there).

::

    from xfuse.sweep.plan import SweepSpec, make_plan, run_local
"""
