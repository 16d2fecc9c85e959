"""The tasks `run.py` runs (`task=<name>`, `conf/task/<name>.yaml`), except training's.

Each task module has two functions: ``check(cfg)``, which run.py calls before Hydra makes a run
folder and before any model loads (a bad value is one line and exit code 2), and ``run(cfg)``,
which does the work and trusts the checked config."""
