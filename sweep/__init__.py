"""sweep: a search-space YAML -> Ray Tune + Optuna + ASHA over Lightning trials -> best config -> final run."""
