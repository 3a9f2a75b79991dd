"""The builders by name: each module of cnnlab.models files its builders with `@register_builder`,
and cnnlab.config.MODEL_SCHEMAS holds the schema of the same name."""

from cnnlab.utils.registry import Registry

BUILDERS = Registry("builder")
register_builder = BUILDERS.register
