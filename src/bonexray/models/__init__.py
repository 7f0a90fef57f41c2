"""The model families: Keras networks (searched or fixed) and their search spaces."""
