"""Developer tooling shared by tests, benchmarks and scripts: real servers started as processes.

Nothing in the product imports this package; it sits beside them so a benchmark need not reach
into ``tests/`` to start the same backend the tests start.
"""
