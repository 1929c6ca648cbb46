"""The verl backend: a harness recipe and profile compiled to verl 0.9's own configuration.

- compile.py: the recipe -> Hydra overrides for `python -m verl.trainer.main_ppo`, with a table of
  what each recipe value became and the values verl cannot express;
- data.py: the profile's training and validation items as verl's parquet layout;
- references.py: an item's reference as verl's ground-truth string and back, with its Python types;
- reward.py: the module verl's `custom_reward_function` points at: the suites' own scorers,
  each call bounded in a worker process;
- metrics.py: verl's file-logger lines -> the harness's metrics.jsonl rows.

Nothing here imports verl: compiling, writing data and reading metrics run where verl is not
installed (`tox -e py`); `tox -e verl` checks the results against verl itself.
"""
