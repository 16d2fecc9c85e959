"""Training's tasks (`task=train`, `task=evaluate`, `task=loop`): each module has ``check(cfg)``,
run before Hydra makes a run folder and before any model loads, and ``run(cfg)``."""
