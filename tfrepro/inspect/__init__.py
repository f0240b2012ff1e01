"""Inspect and compare recorded runs: `tfrepro show`, `tfrepro diff`, `tfrepro doctor`.

compare.py  compare(env_a, env_b) -> [Difference]: pure, ranked (replay's drift uses its GPU rows)
render.py   text tables that fit 100 columns; colour only on a terminal
checks.py   doctor: gather() does the I/O, each check is a pure function over the facts
"""
