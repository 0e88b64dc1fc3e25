"""Lightning layer: modules, trainer/strategy factory, callbacks, loggers, checkpoints."""
