"""fit-vs-tape: what Keras' model.fit() does, shown by doing it by hand and proving it identical."""

__version__ = "0.1.0"
