"""Sub-commands of the `vau` CLI: each module has ``add_arguments(parser)`` and ``run(args)``."""
