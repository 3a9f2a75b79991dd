"""The loaders by name: each module of cnnlab.data files its loaders with `@register_loader`,
and cnnlab.config.DATA_SCHEMAS holds the schema of the same name."""

from cnnlab.utils.registry import Registry

LOADERS = Registry("loader")
register_loader = LOADERS.register
