"""The HTML report and the model cards."""
