"""Typed configuration: profiles are YAML files, loaded into the dataclasses below.

A profile (`harness/profiles/<name>.yaml`, or any YAML path) gives values for some fields; every
field not given keeps the default declared here. Command-line overrides use dotted keys, as
verl / Hydra users type them:

    harness eval CKPT --profile tiny eval.k=8 rollout.max_batch_sequences=256

Every key is checked against the schema and every value against its declared type and range; a
bad one raises `ConfigError` with one line naming the key and what would be valid (the CLI turns
that into exit code 2). Each field is documented by the string literal under it.

The package: `errors` (the user-error base class; imports nothing of the project), `schema` (the
dataclasses) and `loader` (profiles, recipes, overrides, validation).
"""

from harness.config.errors import ConfigError, UserError
from harness.config.loader import (
    DEFAULT_RECIPE,
    PROFILES_DIR,
    RECIPES_DIR,
    apply_override,
    available_profiles,
    available_recipes,
    from_dict,
    load_config,
    to_dict,
)
from harness.config.schema import *  # noqa: F403  (every section's dataclass, the field types, the benchmark lists)
from harness.config.schema import __all__ as _schema_names

__all__ = ["ConfigError", "UserError", "DEFAULT_RECIPE", "PROFILES_DIR", "RECIPES_DIR", "apply_override",
           "available_profiles", "available_recipes", "from_dict", "load_config", "to_dict", *_schema_names]
