"""The report: a sweep's results turned into tables with seed-level statistics, findings, figures and files.

Reads a sweep (its plan and ``results/``) and, where present, its features
store; writes ``report/`` (``results.csv``, ``comparisons.csv``,
``report.md``, figures). May import every earlier stage.

Modules, in the order data flows through them: ``results`` (the sweep's runs
read and checked, late fusion, the constant floor), ``statistics`` (seed-level
intervals and tests, the ECE noise floor), ``tables`` (``build_report``: every
row and comparison), ``findings`` (the sentences), ``figures``, ``render``
(``write_report``), ``provenance``.

::

    from xfuse.report.tables import ReportConfig, build_report
    from xfuse.report.render import write_report

    write_report(build_report(ReportConfig(plan="sweeps/e5/plan.json")), Path("sweeps/e5/report"))
"""
