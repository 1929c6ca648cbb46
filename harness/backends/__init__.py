"""Backends that run a recipe somewhere other than this process: `verl` (the recipe compiled to
verl's configuration, run on Ray). The in-process trainer (trainers/) is the `local` one."""
