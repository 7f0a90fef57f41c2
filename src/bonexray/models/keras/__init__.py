"""The Keras models: network, search space, fit loop, Keras Tuner search."""
