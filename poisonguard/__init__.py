"""PoisonGuard: audit machine-learning training data for poisoning."""

__version__ = "0.1.0"
